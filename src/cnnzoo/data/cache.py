"""The on-disk cache of a prepared dataset: ``images.npy`` (uint8 memmap), ``labels.npy``, ``manifest.json``.

All splits share one images array, stored one after the other (train, val, test); the manifest says
where each starts and stops, so a split is a slice of the memmap and never a copy in memory.

Crash safety: the manifest is deleted before anything is rewritten and written last, each file under
a temporary name then ``os.replace``d. A preparation killed half way leaves no manifest, hence no
cache that looks valid; the next run simply prepares again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from cnnzoo.data.splits import DataError, DataSplits, ImageSet
from cnnzoo.files import atomic_write_text

CACHE_FORMAT = "cnnzoo-data-cache"
CACHE_VERSION = 1
MANIFEST = "manifest.json"
SPLIT_NAMES = ("train", "val", "test")


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _replace_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data))  # compact: a file list can be long


class CacheWriter:
    """Fill ``images`` (a writable memmap, ``[n, 3, size, size]``) by index, then :meth:`finish`.

    Used as a context manager: leaving it by an exception removes the temporary files.
    """

    def __init__(self, folder: Path, n: int, size: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / MANIFEST).unlink(missing_ok=True)  # from now on the old cache is invalid
        self._tmp_images = _temp_name(self.folder / "images.npy")
        self.images_path = self._tmp_images  # other processes may open it to write their rows
        self._images: Optional[np.memmap] = np.lib.format.open_memmap(
            self._tmp_images, mode="w+", dtype=np.uint8, shape=(n, 3, size, size))

    @property
    def images(self) -> np.memmap:
        """The rows being written (a writable memmap); closed once :meth:`finish` moves its file into place
        or an error removes it."""
        if self._images is None:
            raise RuntimeError(f"the cache writer of {self.folder} is closed: its images were moved or removed")
        return self._images

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._images = None
            for name in ("images.npy", "images.npy.compact", "labels.npy", MANIFEST):
                _temp_name(self.folder / name).unlink(missing_ok=True)

    def finish(self, labels: np.ndarray, keep: np.ndarray, manifest: dict) -> None:
        """Drop the rows where ``keep`` is False, then move everything into place, manifest last."""
        if not keep.all():
            self._compact(keep)
        labels = np.asarray(labels, dtype=np.int64)[keep]
        self.images.flush()
        self._images = None
        labels_tmp = _temp_name(self.folder / "labels.npy")
        with open(labels_tmp, "wb") as f:
            np.save(f, labels)
        os.replace(self._tmp_images, self.folder / "images.npy")
        os.replace(labels_tmp, self.folder / "labels.npy")
        manifest = {"format": CACHE_FORMAT, "version": CACHE_VERSION, **manifest}
        _replace_json(self.folder / MANIFEST, manifest)

    def _compact(self, keep: np.ndarray, chunk: int = 1024) -> None:
        # Copy the good rows into a smaller array chunk by chunk (stays within memory for any size).
        kept = np.flatnonzero(keep)
        tmp = _temp_name(self.folder / "images.npy.compact")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(kept),) + self.images.shape[1:])
        for start in range(0, len(kept), chunk):
            out[start:start + chunk] = self.images[kept[start:start + chunk]]
        out.flush()
        self._images = None
        os.replace(tmp, self._tmp_images)
        self._images = out


def read_manifest(folder: Path) -> Optional[dict]:
    """The manifest of a complete cache in ``folder``, or None if there is none (or it is from another version)."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != CACHE_FORMAT or manifest.get("version") != CACHE_VERSION:
        return None
    return manifest


def open_prepared(folder: Path, source: str) -> DataSplits:
    """The cache just written in ``folder`` (by :meth:`CacheWriter.finish`), opened."""
    manifest = read_manifest(folder)
    if manifest is None:  # written just before: only a concurrent writer or a full disk gets here
        raise DataError(f"the prepared data cache in {folder} cannot be read back; delete the folder and retry")
    return open_splits(folder, manifest, source)


def open_splits(folder: Path, manifest: dict, source: str) -> DataSplits:
    """The cached arrays as :class:`DataSplits`; each split is a read-only slice of one memmap."""
    folder = Path(folder)
    images = np.load(folder / "images.npy", mmap_mode="r")
    labels = np.load(folder / "labels.npy")
    sets: dict[str, Optional[ImageSet]] = {}
    for name in SPLIT_NAMES:
        bounds = manifest["splits"].get(name)
        sets[name] = ImageSet(images[bounds[0]:bounds[1]], labels[bounds[0]:bounds[1]]) if bounds else None
    train = sets["train"]
    if train is None:  # every source refuses data without training images before writing a cache
        raise DataError(f"the data cache in {folder} has no training images; delete the folder and prepare it again")
    return DataSplits(train=train, val=sets["val"], test=sets["test"],
                      class_names=list(manifest["class_names"]), image_size=int(manifest["image_size"]),
                      mean=tuple(manifest["mean"]), std=tuple(manifest["std"]), source=source,
                      cache_path=str(folder), skipped=list(manifest.get("skipped", [])))


def split_bounds(split_of_row: np.ndarray) -> dict:
    """Row ranges ``{"train": [0, 80], "val": [80, 100]}`` for rows stored split after split."""
    bounds, start = {}, 0
    for code, name in enumerate(SPLIT_NAMES):
        count = int((split_of_row == code).sum())
        if count:
            bounds[name] = [start, start + count]
        start += count
    return bounds
