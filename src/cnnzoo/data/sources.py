"""``load_dataset``: one entry point that turns a ``--data`` value into :class:`DataSplits`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from cnnzoo.data.builtin import load_digits, load_synthetic
from cnnzoo.data.cifar import load_cifar
from cnnzoo.data.csv_labels import is_label_list, load_csv_labels
from cnnzoo.data.folders import load_folder
from cnnzoo.data.parquet import is_parquet_source, load_parquet
from cnnzoo.data.splits import DataError, DataSplits, check_val_fraction
from cnnzoo.preprocessing import RESIZE_MODES

SOURCES_HELP = ("an image folder (root/<class>/*.jpg, or root/train/<class>/... with val/ and test/), "
                "a CSV label list (one row per image: its path and its label), a Parquet image set "
                "(Hugging Face's layout: a .parquet file or a folder of train/validation/test files), "
                "'digits' (built in), 'synthetic' or 'synthetic:classes=4,n=256,size=32', "
                "'cifar10', 'cifar100'")

__all__ = ["RESIZE_MODES", "SOURCES_HELP", "default_cache_dir", "load_dataset"]


def default_cache_dir() -> Path:
    """``$CNNZOO_CACHE`` if set, else ``~/.cache/cnnzoo``."""
    return Path(os.environ.get("CNNZOO_CACHE") or Path.home() / ".cache" / "cnnzoo")


def load_dataset(source: Union[str, os.PathLike] = "digits", *, image_size: Optional[int] = None,
                 val_fraction: float = 0.2, seed: int = 0, cache_dir=None, resize: str = "shorter_crop",
                 progress: bool = True, val_source: Union[str, os.PathLike, None] = None,
                 path_column: Optional[str] = None, label_column: Optional[str] = None) -> DataSplits:
    """Load (preparing once if needed) a dataset by name, folder or file path.

    Sources and their default ``image_size``: ``"digits"`` 32, ``"synthetic[:classes=..,n=..,size=..]"``
    32, ``"cifar10"``/``"cifar100"`` 32, an image folder, a CSV label list or a Parquet image set 64.
    ``val_fraction`` of each class is held out for validation when the source has no validation split
    of its own; for digits, synthetic and CIFAR ``seed`` picks which, for folders, label lists and
    Parquet sets the choice is fixed by the file names (the same whatever the seed, so runs with
    different seeds are validated on the same images). ``resize`` (files, and CIFAR at another size):
    ``shorter_crop`` (shorter side to size, centre crop), ``stretch`` or ``pad``.

    A label list (``.csv``): ``val_source`` another list for validation (else a ``split`` column, else
    the held-out fraction); ``path_column`` and ``label_column`` name its columns when they are not
    found by themselves (see :mod:`cnnzoo.data.csv_labels`). ``label_column`` also applies to Parquet.
    Prepared sources live in ``cache_dir`` (default :func:`default_cache_dir`).
    """
    check_val_fraction(val_fraction)
    if resize not in RESIZE_MODES:
        raise DataError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    if image_size is not None and (int(image_size) != image_size or image_size < 4):
        raise DataError(f"--image-size must be an integer of at least 4, got {image_size}")
    name = os.fspath(source)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = Path(name).expanduser()
    if is_label_list(path):
        return load_csv_labels(path, cache, val_source=val_source, path_column=path_column,
                               label_column=label_column, image_size=image_size, val_fraction=val_fraction,
                               resize=resize, progress=progress)
    for option, value in (("--val-data", val_source), ("--path-column", path_column)):
        if value is not None:
            raise DataError(f"{option} applies to CSV label lists; --data {name!r} is not one")
    if is_parquet_source(path):
        return load_parquet(path, cache, label_column=label_column, image_size=image_size,
                            val_fraction=val_fraction, resize=resize, progress=progress)
    if label_column is not None:
        raise DataError(f"--label-column applies to CSV label lists and Parquet sets; --data {name!r} is neither")
    if name == "digits":
        return load_digits(image_size=image_size, val_fraction=val_fraction, seed=seed)
    if name == "synthetic" or name.startswith("synthetic:"):
        return load_synthetic(name, image_size=image_size, val_fraction=val_fraction, seed=seed)
    if name in ("cifar10", "cifar100"):
        return load_cifar(name, cache, image_size=image_size, val_fraction=val_fraction, seed=seed,
                          resize=resize, progress=progress)
    if path.is_dir():
        return load_folder(path, cache, image_size=image_size, val_fraction=val_fraction, resize=resize,
                           progress=progress)
    what = "is a file but not a .csv label list or a .parquet set" if path.exists() else "does not exist"
    raise DataError(f"--data {name!r}: {what}. A dataset is {SOURCES_HELP}.")
