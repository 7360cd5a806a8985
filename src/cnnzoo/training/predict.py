"""Classify image files with a checkpoint, or with a model by name and its published weights:
top-k classes and their probabilities per image.

Each image is prepared exactly as the training data was (the checkpoint's size, resize mode, channel
order, mean and std), or as the weights expect (their :class:`~cnnzoo.preprocessing.Preprocessing`);
a model by name with ImageNet weights names ImageNet's 1,000 classes. With ``tta``, each image's
flip-averaged prediction (:func:`cnnzoo.training.tta.predict_tta`) is given beside the plain one.
An image that cannot be read is reported in its :class:`Prediction` and the others are still classified.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from cnnzoo.checkpoint import Checkpoint, load_checkpoint, require_task
from cnnzoo.data.decode import decode_image
from cnnzoo.devices import pick_device
from cnnzoo.errors import UserError
from cnnzoo.factory import create_model_with_args
from cnnzoo.preprocessing import Preprocessing
from cnnzoo.pretrained import imagenet_class_names, weights_preprocessing
from cnnzoo.registry import list_models
from cnnzoo.registry import require_task as require_model_task
from cnnzoo.training.tta import predict_tta


@dataclass
class Prediction:
    """``top``: ``[(class_name, probability), ...]`` best first; ``tta``: the same for the flip-averaged
    prediction (empty unless asked for); ``error`` set instead when unreadable."""

    path: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: Optional[str] = None
    tta: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        out: dict[str, Any] = {"path": self.path, "predictions": _ranked(self.top)}
        return out | ({"tta_predictions": _ranked(self.tta)} if self.tta else {})


def _ranked(top: list[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"class": c, "probability": p} for c, p in top]


def read_image(path: Union[str, os.PathLike], size: int, resize: str = "shorter_crop") -> np.ndarray:
    """One image file -> uint8 ``[3, size, size]``, decoded by the very function that fills the data
    cache for image folders, so a photo is prepared exactly as the training images were."""
    return decode_image(path, size, resize)


def predict(checkpoint: Union[str, os.PathLike, Checkpoint], images: Sequence[Union[str, os.PathLike]], *,
            top_k: int = 5, device: str = "auto", batch_size: int = 64, weights: Optional[str] = None,
            tta: bool = False, **model_args: Any) -> list[Prediction]:
    """Top-``top_k`` classes for each image file, in the order given.

    ``checkpoint``: a checkpoint (or its path), or a registered model's name with ``weights``
    ("imagenet", "torchvision", "keras" or a weights file; ``model_args`` as for ``create_model``):
    a model trained on ImageNet, whose classes are ImageNet's. ``tta``: also the flip-averaged
    prediction, in each :class:`Prediction`'s ``tta``.
    """
    model, prep, class_names = _model_to_run(checkpoint, weights, model_args)
    top_k = max(1, min(top_k, len(class_names)))
    dev = pick_device(device)
    model = model.to(dev).eval()

    results = [Prediction(str(p)) for p in images]
    readable: list[tuple[int, np.ndarray]] = []
    for i, path in enumerate(images):
        try:
            readable.append((i, read_image(path, prep.image_size, prep.resize)))
        except Exception as err:  # any decoding failure is reported for that file, the rest go on
            results[i].error = _describe_error(path, err)
    for start in range(0, len(readable), batch_size):
        chunk = readable[start:start + batch_size]
        pixels = torch.from_numpy(np.stack([img for _, img in chunk])).float()
        x = prep.normalize(pixels / 255.0).to(dev)
        with torch.inference_mode():
            probs = torch.softmax(model(x).float(), dim=1).cpu()
            flipped = torch.softmax(predict_tta(model, x, flips=True).float(), dim=1).cpu() if tta else None
        for (i, _), top in zip(chunk, _top(probs, top_k, class_names)):
            results[i].top = top
        if flipped is not None:
            for (i, _), top in zip(chunk, _top(flipped, top_k, class_names)):
                results[i].tta = top
    return results


def _top(probs: torch.Tensor, k: int, class_names: Sequence[str]) -> list[list[tuple[str, float]]]:
    values, indices = probs.topk(k, dim=1)
    return [[(class_names[j], float(v)) for v, j in zip(vals, idxs)]
            for vals, idxs in zip(values.tolist(), indices.tolist())]


def _model_to_run(source: Union[str, os.PathLike, Checkpoint], weights: Optional[str],
                  model_args: dict[str, Any]) -> tuple[nn.Module, Preprocessing, list[str]]:
    """The model, how its images are prepared, and its class names: a checkpoint's own, or a
    registered model built with published (ImageNet) weights and theirs."""
    name = os.fspath(source) if not isinstance(source, Checkpoint) else None
    if name is not None and name in list_models() and not Path(name).is_file():
        return _pretrained_model(name, weights, model_args)
    if weights is not None or model_args:
        given = ", ".join(["weights"] * (weights is not None) + sorted(model_args))
        raise UserError(f"{given}: only for a model given by name; a checkpoint carries its own weights and arguments")
    state = source if isinstance(source, Checkpoint) else load_checkpoint(source)
    require_task(state, "image", state.model_name if isinstance(source, Checkpoint) else source,
                 "For a sequence model use cnnzoo generate (audio) or cnnzoo forecast (series).")
    return state.build_model(), state.image.preprocessing, list(state.image.class_names)


def _pretrained_model(name: str, weights: Optional[str], model_args: dict[str, Any]
                      ) -> tuple[nn.Module, Preprocessing, list[str]]:
    require_model_task(name, "image", "predict classifies images with image models")
    if weights is None:
        raise UserError(f"{name} by name has random weights, whose predictions mean nothing: give --weights "
                        "imagenet (or torchvision, keras, a weights file), or a checkpoint written by cnnzoo train")
    model, args = create_model_with_args(name, weights=weights, **model_args)
    prep = weights_preprocessing(weights, name)
    classes = imagenet_class_names()
    if prep is None or args.get("num_classes") != len(classes):
        raise UserError(f"{weights!r} does not hold {name}'s ImageNet classifier ({args.get('num_classes')} "
                        f"classes{'' if prep else ', no preprocessing recorded'}): predict by name needs ImageNet "
                        "weights with their 1000-class head. For your own classes, predict with the checkpoint "
                        "cnnzoo train wrote")
    return model, prep.for_channels(args.get("in_chans", 3)), list(classes)


def _describe_error(path, err: Exception) -> str:
    if not Path(path).exists():
        return "file does not exist"
    if Path(path).is_dir():
        return "is a folder, not an image"
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"cannot read as an image ({message})"
