"""Pooled features of every image of a data set, from a checkpoint or a (pretrained) model by name.

A feature is what the classifier reads: ``model.forward_head(model.forward_features(x),
pre_logits=True)``, the globally pooled last feature map (VGG: the last hidden layer of its MLP).
Saved as ``.npz`` for scikit-learn or a nearest-neighbour search::

    f = np.load("features.npz")
    f["train_features"], f["train_labels"], f["class_names"], f["val_files"]
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np
import torch
from torch import nn

from cnnzoo.checkpoint import load_checkpoint
from cnnzoo.config import TrainConfig
from cnnzoo.data import BatchLoader, DataSplits, load_dataset
from cnnzoo.data.cache import read_manifest
from cnnzoo.devices import autocast, pick_device
from cnnzoo.errors import UserError
from cnnzoo.factory import create_model
from cnnzoo.files import atomic_open
from cnnzoo.models import Classifier
from cnnzoo.preprocessing import Preprocessing
from cnnzoo.pretrained import weights_preprocessing
from cnnzoo.registry import list_models, require_task

SPLITS = ("train", "val", "test")
FEATURES_ARE_IMAGE_FEATURES = ("features are an image classifier's pooled features before its head; a "
                               "sequence model's training and outputs go through cnnzoo train, generate and forecast")


@torch.no_grad()
def pooled_features(model: nn.Module, batches: Iterable, *, amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, labels)`` of every ``(x, y)`` batch: float32 ``[N, model.num_features]`` (or the
    pre-logits width) and int64 ``[N]``, on the batches' device. The model runs in eval mode (its
    mode is restored after). Under ``no_grad``, not ``inference_mode``: the result may be trained on."""
    if not isinstance(model, Classifier):
        raise UserError(f"{type(model).__name__} has no head API (forward_head): features come from image classifiers")
    was_training = model.training
    model.eval()
    feats, labels = [], []
    try:
        for x, y in batches:
            with autocast(x.device, amp):
                f = model.forward_head(model.forward_features(x), pre_logits=True)
            feats.append(f.float())
            labels.append(y)
    finally:
        model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


@dataclass
class SplitFeatures:
    features: np.ndarray           # float32 [N, D]
    labels: np.ndarray             # int64 [N]
    files: Optional[list[str]] = None  # paths relative to the data folder (image folders only)


@dataclass
class Features:
    """The features of each split of one data set, and what produced them."""

    model: str
    weights: Optional[str]
    source: str
    class_names: list[str]
    preprocessing: Preprocessing
    splits: dict[str, SplitFeatures] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(next(iter(self.splits.values())).features.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """What the .npz holds: ``<split>_features``, ``<split>_labels``, ``<split>_files`` (when the
        source has file names), ``class_names``, and the provenance (``model``, ``weights``, ``source``,
        ``image_size``, ``mean``, ``std``). Strings are unicode arrays: ``np.load`` needs no pickle."""
        out: dict[str, Any] = {}
        for name, split in self.splits.items():
            out[f"{name}_features"] = split.features
            out[f"{name}_labels"] = split.labels
            if split.files is not None:
                out[f"{name}_files"] = np.array(split.files, dtype=str)
        out["class_names"] = np.array(self.class_names, dtype=str)
        out.update(model=np.array(self.model), weights=np.array(self.weights or ""), source=np.array(self.source),
                   image_size=np.array(self.preprocessing.image_size),
                   mean=np.array(self.preprocessing.mean, dtype=np.float32),
                   std=np.array(self.preprocessing.std, dtype=np.float32))
        return out

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write the ``.npz`` atomically: a reader never sees half of it."""
        with atomic_open(path) as f:
            # numpy's stub lets a **dict fill savez's allow_pickle: no array here is named that
            np.savez(f, **self.arrays())  # type: ignore[arg-type]
        return Path(path)

    def summary(self) -> str:
        parts = ", ".join(f"{name} {len(s.labels)}" for name, s in self.splits.items())
        made_by = self.model + (f" with {self.weights} weights" if self.weights else "")
        return f"{parts} images x {self.dim} features of {made_by} on {self.source}"


def extract_features(model: Union[str, os.PathLike], data: Union[str, os.PathLike, DataSplits, None] = None, *,
                     weights: Optional[str] = None, split: Optional[str] = None, batch_size: int = 256,
                     image_size: Optional[int] = None, device: str = "auto", cache_dir: Optional[str] = None,
                     progress: bool = True, **model_args: Any) -> Features:
    """Pooled features of every image of ``data`` (each split, or only ``split``).

    ``model``: a checkpoint written by ``cnnzoo train`` (``data`` defaults to the data it was trained
    on) or a registered name, with ``weights`` (``"torchvision"`` or a file) and ``model_args``.
    Images are prepared as the model expects: a checkpoint's own preprocessing, published weights'
    size, mean and std, else the data's own. ``image_size`` overrides the size.
    """
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    if split is not None and split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    net, name, prep, trained = _model_and_preprocessing(model, weights, model_args)
    if data is None:
        if trained is None:
            raise UserError(f"give the data to compute features of (--data): {str(model)!r} is a model name")
        data = trained.data
    if not isinstance(data, DataSplits):
        # a checkpoint's seed and validation share give back the splits it was trained with
        data = load_dataset(data, image_size=image_size or (prep.image_size if prep else None),
                            resize=prep.resize if prep else "shorter_crop", seed=trained.seed if trained else 0,
                            val_fraction=trained.val_fraction if trained else 0.2, cache_dir=cache_dir,
                            progress=progress)
    own = Preprocessing(data.image_size, data.mean, data.std)
    if prep is not None:
        prep = prep.for_channels(data.in_chans)
        own = Preprocessing(data.image_size, prep.mean, prep.std, prep.resize, prep.channel_order)
    chosen = [split] if split else [s for s in SPLITS if getattr(data, s) is not None]
    if split and getattr(data, split) is None:
        raise UserError(f"the data {data.source!r} has no {split!r} split")

    dev = pick_device(device)
    net = net.to(dev)
    files = _file_names(data)
    result = Features(model=name, weights=weights, source=str(data.source), class_names=list(data.class_names),
                      preprocessing=own)
    for which in chosen:
        loader = BatchLoader(getattr(data, which), batch_size, shuffle=False, preprocessing=own, device=dev)
        feats, labels = pooled_features(net, loader)
        result.splits[which] = SplitFeatures(feats.cpu().numpy(), labels.cpu().numpy(),
                                             files.get(which) if files else None)
    return result


def _model_and_preprocessing(model, weights,
                             model_args) -> tuple[nn.Module, str, Optional[Preprocessing], Optional[TrainConfig]]:
    """The model, its name, the preprocessing it expects (None: the data's own), and for a
    checkpoint the config it was trained with (its data, seed and validation share)."""
    text = os.fspath(model)
    if text in list_models():
        require_task(text, "image", FEATURES_ARE_IMAGE_FEATURES)
        net = create_model(text, weights=weights, **model_args)
        return net, text, weights_preprocessing(weights, text), None
    if not Path(text).is_file():
        raise UserError(f"{text!r} is neither a model name (see `cnnzoo list`) nor a checkpoint file")
    if weights is not None or model_args:
        raise UserError(f"{text!r} is a checkpoint: it carries its own weights and model arguments; "
                        "--weights and model arguments only go with a model name")
    state = load_checkpoint(text)
    require_task(state.model_name, "image", FEATURES_ARE_IMAGE_FEATURES)
    return state.build_model(), state.model_name, state.image.preprocessing, state.config


def _file_names(data: DataSplits) -> Optional[dict[str, list[str]]]:
    """Each split's file names, for an image folder (its cache manifest lists them); else None."""
    manifest = read_manifest(Path(data.cache_path)) if data.cache_path else None
    if not manifest or "files" not in manifest:
        return None
    skipped = set(manifest.get("skipped", []))
    kept = [record[0] for record in manifest["files"] if record[0] not in skipped]  # row order of the cache
    return {name: kept[start:stop] for name, (start, stop) in manifest["splits"].items()}
