"""What every data source hands back: uint8 images and int64 labels, split into train / val / test."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np

from cnnzoo.errors import UserError


class DataError(UserError, ValueError):
    """A dataset that cannot be used as given (the message names the file or folder and what to do)."""


def class_index_map(data_classes: Sequence[str], model_classes: Sequence[str], source: str = "the data") -> np.ndarray:
    """Where each of the data's classes sits among a model's: label ``i`` of the data is the model's
    class ``map[i]``. A model may know more classes than the data holds, not fewer; a class the model
    was not trained on is a ``DataError`` naming it."""
    model_classes = list(model_classes)
    missing = [c for c in data_classes if c not in model_classes]
    if missing:
        raise DataError(f"{source} has classes the model was not trained on: {', '.join(missing[:10])}; "
                        f"the model knows {', '.join(model_classes[:10])}")
    return np.array([model_classes.index(c) for c in data_classes], dtype=np.int64)


@dataclass
class ImageSet:
    """One split: ``images`` uint8 ``[N, 3, H, W]`` (an array or an ``np.memmap``), ``labels`` int64 ``[N]``."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {self.images.shape}")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        kind = "memmap" if isinstance(self.images, np.memmap) else "array"
        return f"ImageSet({len(self)} images {tuple(self.images.shape[1:])} uint8 {kind})"


@dataclass
class DataSplits:
    """A prepared dataset. ``mean``/``std`` are per-channel statistics of ``train`` in [0, 1] units."""

    train: ImageSet
    val: Optional[ImageSet]
    test: Optional[ImageSet]
    class_names: list[str]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    cache_path: Optional[str] = None  # the cache folder a prepared source was read from
    skipped: list[str] = field(default_factory=list)  # files that could not be decoded

    @property
    def in_chans(self) -> int:
        return 3

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> str:
        """One line for reports: source, sizes, classes."""
        parts = [f"{name} {len(s)}" for name, s in (("train", self.train), ("val", self.val),
                                                    ("test", self.test)) if s is not None]
        return (f"{self.source}: {', '.join(parts)} images, {self.num_classes} classes, "
                f"{self.image_size}x{self.image_size} px")


def channel_stats(images: np.ndarray, rows: Optional[np.ndarray] = None, chunk: int = 1024) -> tuple[tuple, tuple]:
    """Per-channel mean and std of uint8 ``[N, 3, H, W]`` images (or only ``rows`` of them) in [0, 1] units.

    Counts each channel's 256 values (a histogram: exact, and several times faster than summing
    floats), reading in chunks so it works on memmaps larger than memory.
    """
    n = len(images) if rows is None else len(rows)
    if n == 0:
        raise DataError("cannot compute image statistics of an empty training split")
    counts = np.zeros((images.shape[1], 256), np.int64)
    for start in range(0, n, chunk):
        block = images[start:start + chunk] if rows is None else images[rows[start:start + chunk]]
        for channel in range(images.shape[1]):
            counts[channel] += np.bincount(np.ravel(block[:, channel]), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255
    total = counts.sum(axis=1)
    mean = counts @ values / total
    std = np.sqrt(np.maximum(counts @ values ** 2 / total - mean ** 2, 0.0))
    std = np.maximum(std, 1e-3)  # a constant channel would otherwise divide by zero
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)`` with ``val_fraction`` of every class in val, chosen by ``seed``.

    Each class with at least two samples gives at least one to val (when val_fraction > 0), so every
    class is validated. Both index arrays come back sorted (memmap reads in order are fastest).
    """
    check_val_fraction(val_fraction)
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        members = members[rng.permutation(len(members))]
        n_val = n_val_for(len(members), val_fraction)
        val_idx.append(members[:n_val])
        train_idx.append(members[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def hold_out_by_name(names: Sequence[str], labels: Union[Sequence[int], np.ndarray],
                     val_fraction: float) -> np.ndarray:
    """Mask of the items that go to val: ``val_fraction`` of each class, chosen by a hash of each
    item's name (a file's relative path, a row's file and number). The same items whatever the seed,
    on any machine, so runs with different seeds are validated on the same images."""
    label_of = np.asarray(labels)
    to_val = np.zeros(len(label_of), dtype=bool)
    for label in np.unique(label_of):
        members = sorted(np.flatnonzero(label_of == label), key=lambda i: _name_hash(names[int(i)]))
        to_val[members[:n_val_for(len(members), val_fraction)]] = True
    return to_val


def _name_hash(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def label_vocabulary(values: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """Class names for raw label values and each value's index among them. Names are sorted,
    numerically when every value is an integer (so labels 0..K-1 keep their numbers, "10" comes
    after "9" and "07" is class "7")."""
    distinct = set(values)
    if distinct and all(_is_integer(v) for v in distinct):
        numbers = sorted({int(v) for v in distinct})
        position = {n: i for i, n in enumerate(numbers)}
        return [str(n) for n in numbers], {v: position[int(v)] for v in distinct}
    names = sorted(distinct)
    return names, {name: i for i, name in enumerate(names)}


def _is_integer(value: str) -> bool:
    return value.lstrip("-").isdigit()


def n_val_for(n: int, val_fraction: float) -> int:
    """How many of a class's ``n`` samples go to val: rounded, at least 1 and at most n - 1."""
    if val_fraction <= 0 or n < 2:
        return 0
    return min(max(1, round(n * val_fraction)), n - 1)


def check_val_fraction(val_fraction: float) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"--val-fraction must be in [0, 1), got {val_fraction}")
