"""See the data as the model sees it: a grid of training images straight out of :class:`BatchLoader`.

``show_batch`` draws the first batch the loader yields for an epoch -- the same order, crops, flips
and colour changes the trainer would get for that seed and epoch -- and undoes only the
normalisation (and a BGR model's channel swap), so what is drawn is what is learnt from.
``show_mistakes`` draws an evaluation's most confident mistakes the same way.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from cnnzoo.data.augment import AUGMENT_CHOICES
from cnnzoo.data.loader import BatchLoader
from cnnzoo.data.sources import load_dataset
from cnnzoo.data.splits import DataError, DataSplits
from cnnzoo.display import figure_png, new_figure
from cnnzoo.files import atomic_write_bytes
from cnnzoo.preprocessing import Preprocessing

TILE_INCHES = 1.5  # per image in the grid: room for a class name under a thumbnail


@dataclass(repr=False)
class ImageGrid:
    """Images (uint8 ``[N, 3, H, W]``) with one title each, drawn ``columns`` wide.

    Ends a notebook cell as the picture (``_repr_png_``); ``save(path)`` writes the PNG.
    """

    images: np.ndarray
    titles: list[str]
    columns: int
    title: str = ""

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.images.shape[2:]))
        return f"ImageGrid({len(self.images)} images {shape}: {', '.join(self.titles[:8])}" + (
            ", ...)" if len(self.titles) > 8 else ")")

    def png(self, dpi: int = 100) -> bytes:
        rows = -(-len(self.images) // self.columns)
        fig = new_figure(TILE_INCHES * self.columns, TILE_INCHES * rows + (0.4 if self.title else 0))
        fig.set_layout_engine("constrained")  # room for the grid's title above the tiles' own, however few
        for i, (image, name) in enumerate(zip(self.images, self.titles)):
            ax = fig.add_subplot(rows, self.columns, i + 1)
            picture = np.asarray(image).transpose(1, 2, 0)
            if picture.shape[2] == 1:
                ax.imshow(picture[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(picture, interpolation="nearest")  # small images stay sharp squares
            ax.set_title(name, fontsize=8)
            ax.axis("off")
        if self.title:
            fig.suptitle(self.title, fontsize=10)
        return figure_png(fig, dpi=dpi)

    def _repr_png_(self) -> bytes:
        return self.png()

    def save(self, path: Union[str, os.PathLike]) -> Path:
        path = Path(path)
        atomic_write_bytes(path, self.png())
        return path


def show_batch(data: Union[str, os.PathLike, DataSplits] = "digits", *, augment: Any = "light", n: int = 16,
               seed: int = 0, epoch: int = 0, image_size: Optional[int] = None,
               preprocessing: Optional[Preprocessing] = None, columns: Optional[int] = None,
               progress: bool = False) -> ImageGrid:
    """A grid of ``n`` training images exactly as :class:`BatchLoader` hands them to a model.

    ``data``: a source as :func:`load_dataset` takes it, or the :class:`DataSplits` already loaded.
    ``augment``: a preset name (``AUGMENT_CHOICES``) or a list of steps; ``seed`` and ``epoch`` pick
    the batch (those of a training run with that seed). ``preprocessing`` normalises as a model
    would (its mean, std, channel order); without it the data's own statistics are used. Either
    way the normalisation is undone for display: only augmentation shows.
    """
    if n < 1:
        raise DataError(f"n (the images to show) must be at least 1, got {n}")
    if isinstance(augment, str) and augment not in AUGMENT_CHOICES:
        raise DataError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENT_CHOICES)}")
    splits = data if isinstance(data, DataSplits) else load_dataset(data, image_size=image_size, seed=seed,
                                                                    progress=progress)
    count = min(n, len(splits.train))
    norm = (dict(preprocessing=preprocessing) if preprocessing is not None
            else dict(mean=splits.mean, std=splits.std))
    loader = BatchLoader(splits.train, count, shuffle=True, augment=augment, seed=seed, **norm)
    loader.set_epoch(epoch)
    x, y = next(iter(loader))
    mean, std = (preprocessing.mean, preprocessing.std) if preprocessing is not None else (splits.mean, splits.std)
    images = _denormalise(x.numpy(), mean, std, bgr=preprocessing is not None and preprocessing.channel_order == "bgr")
    names = [splits.class_names[int(label)] for label in y]
    augment_name = augment if isinstance(augment, str) else "custom"
    return ImageGrid(images, names, columns or _columns(count),
                     title=f"{Path(str(splits.source)).name}: epoch {epoch} batch, augment {augment_name}")


def show_mistakes(result: Any, images: np.ndarray, k: int = 16, columns: Optional[int] = None) -> ImageGrid:
    """The ``k`` most confident mistakes of an evaluation, titled true -> predicted (confidence).

    ``result``: anything with ``labels``, ``predicted``, ``confidence`` (arrays over the evaluated
    images) and ``class_names``, as :class:`cnnzoo.training.EvalResult`; ``images``: that split's
    uint8 ``[N, 3, H, W]`` in the same order. The choice is the compare report's gallery's
    (:mod:`cnnzoo.compare.gallery`): wrong, sorted by confidence, highest first.
    """
    if result.predicted is None or result.labels is None or result.confidence is None:
        raise DataError("this evaluation kept no per-image predictions; evaluate again to see its mistakes")
    if len(images) != len(result.labels):
        raise DataError(f"{len(images)} images given for an evaluation of {len(result.labels)}: pass the "
                        "evaluated split's images, in the order they were scored")
    wrong = np.flatnonzero(result.predicted != result.labels)
    wrong = wrong[np.argsort(-result.confidence[wrong], kind="stable")][:k]
    names = list(result.class_names)
    titles = [f"{names[int(result.labels[i])]} -> {names[int(result.predicted[i])]}\n"
              f"({result.confidence[i]:.0%})" for i in wrong]
    total = int((result.predicted != result.labels).sum())
    title = f"{len(wrong)} most confident of {total} mistake{'' if total == 1 else 's'} (true -> predicted)"
    picked = np.asarray(images)[wrong] if len(wrong) else np.zeros((0, 3, 1, 1), np.uint8)
    return ImageGrid(picked, titles, columns or _columns(max(len(wrong), 1)), title=title)


def _denormalise(x: np.ndarray, mean: Sequence[float], std: Sequence[float], bgr: bool) -> np.ndarray:
    shift = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    scale = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    pixels = (x * scale + shift) * 255.0
    if bgr:  # the loader flipped RGB to BGR before normalising; flip back to draw
        pixels = pixels[:, ::-1]
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _columns(n: int) -> int:
    return min(n, 8 if n > 16 else 4 if n > 4 else n)
