"""Parquet image sets in the Hugging Face layout: an image column holding a struct with the encoded
file (``bytes``, and ``path``), a label column, and one file per split (``train-00000-of-00001.parquet``,
``validation-...``, ``test-...``, in a folder or its ``data/``) or a single file.

Class names come from the dataset's features (the ``huggingface`` key of the Parquet schema's
metadata, where a ``ClassLabel`` lists its ``names``); without them, from the label values. Images are
decoded once into the same memmap cache as folders; the cache is reused while the files (sizes,
modification times) and settings are unchanged. Rows whose image cannot be decoded are skipped and
named, with their file and row number, in one warning.

Reading Parquet needs pyarrow, an optional extra: ``pip install "cnnzoo[parquet]"``.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from cnnzoo.data.cache import CacheWriter, open_prepared, open_splits, read_manifest, split_bounds
from cnnzoo.data.decode import decode_image
from cnnzoo.data.folders import FOLDER_DEFAULT_SIZE, warn_skipped
from cnnzoo.data.splits import DataError, DataSplits, channel_stats, hold_out_by_name, label_vocabulary
from cnnzoo.display import steps_bar

IMAGE_COLUMNS = ("image", "img")  # Hugging Face's names; any struct column with encoded bytes also does
LABEL_COLUMNS = ("label", "labels", "class", "category", "fine_label")
# A file's split is the word its name starts with (train-00000-of-00002.parquet) or its folder's name.
SPLIT_WORDS = {"train": 0, "validation": 1, "valid": 1, "val": 1, "dev": 1, "test": 2}
INSTALL_HINT = 'pip install "cnnzoo[parquet]"'
BATCH_ROWS = 256  # rows read and decoded at a time: bounds the encoded bytes held in memory


@dataclass(frozen=True)
class ParquetSplitFile:
    path: Path
    split: int  # 0 train, 1 val, 2 test
    rows: int
    image_column: str
    label_column: str
    class_names: Optional[tuple[str, ...]]  # from the Hugging Face features, if there


def is_parquet_source(path: Path) -> bool:
    """A ``.parquet`` file, or a folder with ``.parquet`` files in it, in ``data/`` or one level down."""
    if path.is_file():
        return path.suffix.lower() == ".parquet"
    return path.is_dir() and bool(_parquet_files(path))


def _parquet_files(folder: Path) -> list[Path]:
    return sorted(p for pattern in ("*.parquet", "*/*.parquet") for p in folder.glob(pattern)
                  if not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq  # imported here: an optional extra, and slow to import (python -X importtime)
    except ImportError:
        raise DataError(f"reading Parquet files needs pyarrow: {INSTALL_HINT}") from None
    return pq


def load_parquet(source, cache_dir, *, label_column: Optional[str] = None, image_size: Optional[int] = None,
                 val_fraction: float = 0.2, resize: str = "shorter_crop", progress: bool = True,
                 workers: Optional[int] = None) -> DataSplits:
    """A Parquet image set (a file or a folder of split files), prepared once into the cache."""
    pq = _pyarrow_parquet()
    root = Path(source).expanduser().resolve()
    files = [_describe(pq, path, split, label_column) for path, split in _split_files(root)]
    class_names, labels = _read_labels(pq, files)
    has_val = any(f.split == 1 for f in files)
    split_of_row = np.repeat([f.split for f in files], [f.rows for f in files])
    if not has_val and val_fraction > 0:
        train = np.flatnonzero(split_of_row == 0)
        names = [f"{f.path.name}#{row}" for f in files if f.split == 0 for row in range(f.rows)]
        split_of_row[train[hold_out_by_name(names, labels[train], val_fraction)]] = 1

    size = image_size or FOLDER_DEFAULT_SIZE
    settings = {"image_size": size, "resize": resize, "val_fraction": None if has_val else val_fraction,
                "label_column": label_column}
    record = [[str(f.path), *_stat(f.path)] for f in files]
    folder = _cache_folder(root, Path(cache_dir), settings)
    manifest = read_manifest(folder)
    if manifest and manifest.get("settings") == settings and manifest.get("files") == record:
        splits = open_splits(folder, manifest, source=str(root))
    else:
        splits = _prepare(pq, folder, root, files, class_names, labels, split_of_row, settings, record, progress,
                          workers)
    if splits.skipped:
        warn_skipped(root, splits.skipped, what="unreadable image")
    return splits


def _split_files(root: Path) -> list[tuple[Path, int]]:
    """``(file, split)`` for a single file (all train) or each split file of a folder."""
    if root.is_file():
        return [(root, 0)]
    found, unknown = [], []
    for path in _parquet_files(root):
        split = _split_of(path, root)
        if split is None:
            unknown.append(path.relative_to(root).as_posix())
        else:
            found.append((path, split))
    if unknown:
        warnings.warn(f"{root}: ignored Parquet files of no train, validation or test split: {', '.join(unknown)}",
                      stacklevel=3)
    if not any(split == 0 for _, split in found):
        raise DataError(f"{root} has no training file: expected Parquet files named train*.parquet "
                        "(Hugging Face's train-00000-of-00001.parquet), or a train/ folder of them")
    return sorted(found, key=lambda item: item[1])  # stable: the file order within a split


def _split_of(path: Path, root: Path) -> Optional[int]:
    for name in (path.stem, *(part for part in path.relative_to(root).parts[:-1])):
        word = re.match(r"[a-z]+", name.lower())
        if word and word.group() in SPLIT_WORDS:
            return SPLIT_WORDS[word.group()]
    return None


def _describe(pq, path: Path, split: int, label_column: Optional[str]) -> ParquetSplitFile:
    try:
        meta = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError... for a file that is not Parquet
        raise DataError(f"cannot read {path} as Parquet: {err}") from None
    schema = meta.schema_arrow
    names = schema.names
    image = _image_column(schema)
    if image is None:
        raise DataError(f"{path} has no image column: expected a column 'image' holding the encoded files "
                        f"(a struct with 'bytes', as Hugging Face writes them); its columns are {', '.join(names)}")
    if label_column is not None:
        if label_column not in names:
            raise DataError(f"--label-column {label_column!r} is not a column of {path}; "
                            f"its columns are {', '.join(names)}")
        label = label_column
    else:
        found = next((name for name in LABEL_COLUMNS if name in names), None)
        if found is None:
            raise DataError(f"{path} has no label column ({', '.join(LABEL_COLUMNS)}); its columns are "
                            f"{', '.join(names)}. Name the one that holds the classes with --label-column")
        label = found
    return ParquetSplitFile(path, split, meta.metadata.num_rows, image, label, _class_names(schema, label))


def _image_column(schema) -> Optional[str]:
    candidates = [name for name in IMAGE_COLUMNS if name in schema.names]
    candidates += [field.name for field in schema if field.name not in candidates]
    for name in candidates:
        kind = schema.field(name).type
        if str(kind).startswith("struct<") and kind.get_field_index("bytes") >= 0:
            return name
        if name in IMAGE_COLUMNS and str(kind) in ("binary", "large_binary"):
            return name
    return None


def _class_names(schema, label: str) -> Optional[tuple[str, ...]]:
    """The ``ClassLabel`` names Hugging Face stores in the schema metadata, if any."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw is None:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    features = (info.get("info") or {}).get("features") or info.get("features") or {}
    feature = features.get(label) if isinstance(features, dict) else None
    if isinstance(feature, dict) and isinstance(feature.get("names"), list) and feature["names"]:
        return tuple(str(name) for name in feature["names"])
    return None


def _read_labels(pq, files: list[ParquetSplitFile]) -> tuple[list[str], np.ndarray]:
    """Class names and every row's label index (reads only the label columns)."""
    raw: list[Any] = []  # the label column's values as Parquet holds them: ints (ClassLabel) or text
    where: list[tuple[ParquetSplitFile, int]] = []  # each value's file and row, for messages
    for f in files:
        values = pq.read_table(f.path, columns=[f.label_column]).column(0).to_pylist()
        for row, value in enumerate(values):
            if value is None or (isinstance(value, str) and not value.strip()) or value == -1:
                raise DataError(f"{f.path}, row {row}: empty label in column {f.label_column!r} "
                                "(Hugging Face writes -1 for an unlabelled image); every row needs its class")
        raw.extend(values)
        where.extend((f, row) for row in range(len(values)))
    declared = next((f.class_names for f in files if f.class_names), None)
    if declared is not None and all(isinstance(v, int) for v in raw):
        bad = next((i for i, v in enumerate(raw) if not 0 <= v < len(declared)), None)
        if bad is not None:
            f, row = where[bad]
            raise DataError(f"{f.path}, row {row}: label {raw[bad]} is outside the {len(declared)} classes "
                            "its metadata declares")
        return list(declared), np.array(raw, dtype=np.int64)
    values = [str(v).strip() for v in raw]
    train = [v for v, (f, _) in zip(values, where) if f.split == 0]
    names, index = label_vocabulary(train)
    for value, (f, row) in zip(values, where):
        if value not in index:
            raise DataError(f"{f.path}, row {row}: class {value!r} is not among the training rows' classes; "
                            "the model learns only the training classes")
    return names, np.array([index[v] for v in values], dtype=np.int64)


def _stat(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _cache_folder(root: Path, cache_dir: Path, settings: dict) -> Path:
    key = hashlib.sha1(json.dumps({"root": str(root), **settings}, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / "parquet" / f"{root.stem or 'root'}-{key}"


def _prepare(pq, folder: Path, root: Path, files: list[ParquetSplitFile], class_names: list[str],
             labels: np.ndarray, split_of_row: np.ndarray, settings: dict, record: list, progress: bool,
             workers: Optional[int]) -> DataSplits:
    """Decode every row into the cache, rows stored split after split (train, val, test)."""
    size, resize = settings["image_size"], settings["resize"]
    destination = np.empty(len(labels), dtype=np.int64)
    destination[np.argsort(split_of_row, kind="stable")] = np.arange(len(labels))
    keep = np.ones(len(labels), dtype=bool)
    skipped = []
    bar = steps_bar(len(labels), desc=f"preparing {root.name}", unit="img", progress=progress)
    # Threads: Pillow releases the GIL while decoding and resizing, and the encoded bytes stay in this process.
    with CacheWriter(folder, len(labels), size) as writer, ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        start = 0
        for f in files:
            row = 0
            for batch in pq.ParquetFile(f.path).iter_batches(batch_size=BATCH_ROWS, columns=[f.image_column]):
                cells = batch.column(0).to_pylist()
                decoded = pool.map(functools.partial(_decode_cell, folder=f.path.parent, size=size, resize=resize),
                                   cells)
                for offset, image in enumerate(decoded):
                    index = start + row + offset
                    if image is None:
                        keep[index] = False
                        skipped.append(f"{f.path.name} row {row + offset}")
                    else:
                        writer.images[destination[index]] = image
                row += len(cells)
                bar.update(len(cells))
            start += f.rows
        bar.close()
        stored = np.argsort(split_of_row, kind="stable")  # original row of each stored row
        keep_stored = keep[stored]
        _check_no_class_lost(root, class_names, labels[stored], split_of_row[stored], keep_stored)
        codes = split_of_row[stored][keep_stored]
        mean, std = channel_stats(writer.images, rows=np.flatnonzero(keep_stored & (split_of_row[stored] == 0)))
        manifest = {"source": str(root), "settings": settings, "image_size": size, "class_names": class_names,
                    "splits": split_bounds(codes), "mean": mean, "std": std, "skipped": skipped, "files": record}
        writer.finish(labels[stored], keep_stored, manifest)
    return open_prepared(folder, source=str(root))


def _decode_cell(cell, folder: Path, size: int, resize: str) -> Optional[np.ndarray]:
    """One image cell (a struct with ``bytes`` and ``path``, or raw bytes) as uint8 ``[3, size, size]``;
    None when it holds nothing decodable. Without bytes, ``path`` names a file beside the Parquet file."""
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    try:
        if data:
            return decode_image(io.BytesIO(data), size, resize)
        path = cell.get("path") if isinstance(cell, dict) else None
        if path:
            return decode_image(folder / path, size, resize)
    except Exception:  # Pillow raises many kinds (OSError, SyntaxError, ValueError...) for bad data
        return None
    return None


def _check_no_class_lost(root: Path, class_names: list[str], labels: np.ndarray, splits: np.ndarray,
                         keep: np.ndarray) -> None:
    for label, name in enumerate(class_names):
        members = (splits == 0) & (labels == label)
        if members.any() and not keep[members].any():
            raise DataError(f"none of the {int(members.sum())} training images of class {name!r} in {root} "
                            "could be decoded; the set cannot be learned from as it is")
