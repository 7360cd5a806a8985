"""Real images for int8: a calibration sample from the training split and an evaluation set (the
validation split) with labels in the model's class order, both prepared as the model was trained
(its image size, resize mode, mean and std)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch

from cnnzoo.data import BatchLoader, DataError, DataSplits, ImageSet, class_index_map, load_dataset
from cnnzoo.errors import UserError
from cnnzoo.export.source import ModelSource
from cnnzoo.preprocessing import Preprocessing

# 128 or all 240 training images of flowers-mini made the same int8 MobileNetV2 and ResNet-18 (same
# agreement with fp32, same accuracy): MinMax ranges settle early.
CALIBRATION_IMAGES = 128
MAX_EVAL_IMAGES = 2000     # an accuracy's standard error is then about 1 point; a large split stays quick


@dataclass
class CalibrationData:
    source: str
    preprocessing: Preprocessing  # the model's (the data's own statistics for random weights)
    calibration: ImageSet         # a seeded sample of the training split
    evaluation: ImageSet          # the validation split (a sample of it if large), else the calibration images
    evaluation_name: str          # "validation images", or "calibration images (...)" without a validation split
    labels: Optional[torch.Tensor]  # evaluation labels as the model's class indices; None if they do not map
    labels_note: str = ""         # why there are no labels, when there are none

    def calibration_batches(self, batch_size: int = 32) -> Iterator[torch.Tensor]:
        return (x for x, _ in self._loader(self.calibration, batch_size))

    def evaluation_batches(self, batch_size: int = 64) -> Iterator[torch.Tensor]:
        return (x for x, _ in self._loader(self.evaluation, batch_size))

    def _loader(self, images: ImageSet, batch_size: int) -> BatchLoader:
        return BatchLoader(images, batch_size, shuffle=False, preprocessing=self.preprocessing)

    def describe(self) -> str:
        return (f"{len(self.calibration)} training images of {self.source}; evaluated on "
                f"{len(self.evaluation)} {self.evaluation_name}")


def load_calibration(data: Union[str, os.PathLike, DataSplits], *, image_size: int,
                     preprocessing: Optional[Preprocessing] = None, class_names: Optional[Sequence[str]] = None,
                     num_images: int = CALIBRATION_IMAGES, max_eval_images: int = MAX_EVAL_IMAGES,
                     val_fraction: float = 0.2, seed: int = 0, cache_dir=None) -> CalibrationData:
    """Load ``data`` (a source or prepared splits) at ``image_size``, prepared with the model's
    ``preprocessing`` (resize, channel order, mean and std; the data's own statistics when the model
    has none, i.e. random weights). Give the ``val_fraction`` and ``seed`` training used, so that its
    validation split holds only images the model never saw."""
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise UserError(f"the number of calibration images must be at least 1, got {num_images!r}")
    if not isinstance(data, DataSplits):
        try:
            resize = preprocessing.resize if preprocessing else "shorter_crop"
            data = load_dataset(data, image_size=image_size, val_fraction=val_fraction, seed=seed, resize=resize,
                                cache_dir=cache_dir, progress=False)
        except UserError as err:
            raise UserError(f"calibration data: {err}") from None
    if data.image_size != image_size:
        raise UserError(f"the calibration data is {data.image_size} px, the model takes {image_size} px")
    if len(data.train) == 0:
        raise UserError(f"calibration data {data.source!r} has no training images")
    rng = np.random.default_rng(seed)
    calibration = _sample(data.train, num_images, rng)
    if data.val is not None and len(data.val):
        evaluation, name = _sample(data.val, max_eval_images, rng), "validation images"
    else:
        evaluation, name = calibration, "calibration images (the data has no validation split)"
    labels, note = _model_labels(evaluation, data, class_names)
    prep = (dataclasses.replace(preprocessing, image_size=image_size) if preprocessing
            else Preprocessing(image_size, data.mean, data.std))
    return CalibrationData(str(data.source), prep, calibration, evaluation, name, labels, note)


def _sample(images: ImageSet, n: int, rng: np.random.Generator) -> ImageSet:
    if len(images) <= n:
        return images
    rows = np.sort(rng.choice(len(images), n, replace=False))
    return ImageSet(np.asarray(images.images[rows]), images.labels[rows])


def _model_labels(images: ImageSet, data: DataSplits,
                  model_classes: Optional[Sequence[str]]) -> tuple[Optional[torch.Tensor], str]:
    """The images' labels as indices into the model's classes, or why there are none."""
    if model_classes is None:
        return None, "the model has no class names (random weights): top-1 agreement only"
    try:
        remap = class_index_map(data.class_names, model_classes, f"the data {data.source!r}")
    except DataError as err:
        return None, f"{err}: top-1 agreement only"
    return torch.from_numpy(remap[images.labels]), ""


def calibration_for(source: ModelSource, calibration, num_images: int) -> Optional[CalibrationData]:
    """The images int8 calibrates on: ``calibration`` if given, else a checkpoint's own training
    data, else none (random weights)."""
    config = source.checkpoint.config if source.checkpoint is not None else None
    if calibration is None:
        if config is None:
            return None
        calibration = config.data  # the data it was trained on
    return load_calibration(calibration, image_size=source.input_size[-1], preprocessing=source.preprocessing,
                            class_names=source.class_names, num_images=num_images,
                            val_fraction=config.val_fraction if config else 0.2, seed=config.seed if config else 0,
                            cache_dir=config.cache_dir if config else None)
