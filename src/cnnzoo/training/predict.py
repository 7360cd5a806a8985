"""Classify image files with a checkpoint: top-k classes and their probabilities per image.

Each image is prepared exactly as the training data was (the checkpoint's size, resize mode, mean
and std). An image that cannot be read is reported in its :class:`Prediction` and the others are
still classified.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from cnnzoo.checkpoint import Checkpoint, load_checkpoint, require_task
from cnnzoo.data.decode import decode_image
from cnnzoo.devices import pick_device


@dataclass
class Prediction:
    """``top``: ``[(class_name, probability), ...]`` best first; ``error`` set instead when unreadable."""

    path: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "predictions": [{"class": c, "probability": p} for c, p in self.top]}


def read_image(path: Union[str, os.PathLike], size: int, resize: str = "shorter_crop") -> np.ndarray:
    """One image file -> uint8 ``[3, size, size]``, decoded by the very function that fills the data
    cache for image folders, so a photo is prepared exactly as the training images were."""
    return decode_image(path, size, resize)


def predict(checkpoint: Union[str, os.PathLike, Checkpoint], images: Sequence[Union[str, os.PathLike]], *,
            top_k: int = 5, device: str = "auto", batch_size: int = 64) -> list[Prediction]:
    """Top-``top_k`` classes for each image file, in the order given."""
    state = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    require_task(state, "image", state.model_name if isinstance(checkpoint, Checkpoint) else checkpoint,
                 "For a sequence model use cnnzoo generate (audio) or cnnzoo forecast (series).")
    prep, class_names = state.image.preprocessing, list(state.image.class_names)
    top_k = max(1, min(top_k, len(class_names)))
    dev = pick_device(device)
    model = state.build_model().to(dev)

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
        values, indices = probs.topk(top_k, dim=1)
        for (i, _), vals, idxs in zip(chunk, values.tolist(), indices.tolist()):
            results[i].top = [(class_names[j], float(v)) for v, j in zip(vals, idxs)]
    return results


def _describe_error(path, err: Exception) -> str:
    if not Path(path).exists():
        return "file does not exist"
    if Path(path).is_dir():
        return "is a folder, not an image"
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"cannot read as an image ({message})"
