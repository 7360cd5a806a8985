"""Label lists: a CSV with one row per image (``path,class``), as fastai's ``from_csv``, Hugging
Face's ``metadata.csv`` and the course's ``flowers_dataset_train.csv`` / ``_test.csv`` pair.

The image column is found by its values (the column whose values are files that exist, relative to
the CSV's folder or absolute) unless ``path_column`` names it; the label column is ``label``,
``class`` or ``category`` unless ``label_column`` names it. Labels are names or integers. A second
list (``val_source``) is the validation split; a ``split`` column (train / val / test) places rows
itself; otherwise ``val_fraction`` of each class is held out, chosen by a hash of the paths.

Images are decoded once into the same memmap cache as folders. The cache is reused while the lists
(their bytes), the listed files (sizes and modification times) and the settings are unchanged.
A listed file that is missing or cannot be decoded is skipped and named, with its line in the list,
in one warning.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from cnnzoo.data.cache import CacheWriter, open_prepared, open_splits, read_manifest, split_bounds
from cnnzoo.data.folders import FOLDER_DEFAULT_SIZE, decode_files, warn_skipped
from cnnzoo.data.splits import DataError, DataSplits, channel_stats, hold_out_by_name, label_vocabulary

LABEL_COLUMNS = ("label", "class", "category")
SPLIT_COLUMN = "split"
SPLIT_VALUES = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}
SPLIT_NAMES = ("train", "val", "test")
PATH_PROBE_ROWS = 20  # rows whose values decide which column holds the image paths


@dataclasses.dataclass(frozen=True)
class ListedImage:
    """One row of a label list."""

    path: Path  # resolved
    written: str  # as written in the list, for messages
    list_name: str  # the list's file name
    line: int  # the row's line in the file (the header is line 1), as an editor shows it
    label: str  # raw value, stripped
    split: int  # 0 train, 1 val, 2 test
    size: int  # -1: the file does not exist
    mtime_ns: int

    def skipped_as(self) -> str:
        """How the warning and the cache manifest name this row when it could not be used."""
        return f"{self.written} ({self.list_name} line {self.line}, {'unreadable' if self.size >= 0 else 'not found'})"


def is_label_list(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in (".csv", ".tsv")


def load_csv_labels(csv_path, cache_dir, *, val_source=None, path_column: Optional[str] = None,
                    label_column: Optional[str] = None, image_size: Optional[int] = None,
                    val_fraction: float = 0.2, resize: str = "shorter_crop", progress: bool = True,
                    workers: Optional[int] = None) -> DataSplits:
    """A label list (and optionally a second one for validation), prepared once into the cache."""
    lists = [Path(csv_path).expanduser().resolve()]
    if val_source is not None:
        lists.append(Path(val_source).expanduser().resolve())
        if not is_label_list(lists[1]):
            raise DataError(f"--val-data {os.fspath(val_source)!r}: not a CSV file "
                            f"({'not found' if not lists[1].exists() else 'expected a .csv label list'})")
    rows = []
    for number, path in enumerate(lists):
        rows.extend(read_label_list(path, default_split=number, path_column=path_column, label_column=label_column))
    class_names, labels = _index_labels(lists, rows)
    explicit_val = any(row.split == 1 for row in rows)  # a validation list, or val rows in a split column
    if not explicit_val and val_fraction > 0:
        rows = _hold_out(rows, labels, val_fraction)
    order = sorted(range(len(rows)), key=lambda i: rows[i].split)  # stable: keeps list order within a split
    rows = [rows[i] for i in order]
    label_of_row = np.array([labels[i] for i in order], dtype=np.int64)

    size = image_size or FOLDER_DEFAULT_SIZE
    settings = {"image_size": size, "resize": resize, "val_fraction": None if explicit_val else val_fraction,
                "path_column": path_column, "label_column": label_column}
    record = {"lists": [[str(p), _file_sha1(p)] for p in lists],
              "rows": [[str(r.path), r.size, r.mtime_ns, int(label), r.split] for r, label in zip(rows, label_of_row)]}
    folder = _cache_folder(lists, Path(cache_dir), settings)
    manifest = read_manifest(folder)
    source = str(lists[0])
    if manifest and manifest.get("settings") == settings and manifest.get("list_record") == record:
        splits = open_splits(folder, manifest, source=source)
    else:
        splits = _prepare(folder, rows, label_of_row, class_names, settings, record, source, progress, workers)
    if splits.skipped:
        warn_skipped(" and ".join(p.name for p in lists), splits.skipped, what="listed image")
    return splits


def read_label_list(path: Path, *, default_split: int = 0, path_column: Optional[str] = None,
                    label_column: Optional[str] = None) -> list[ListedImage]:
    """The rows of one CSV; ``default_split`` places rows without a ``split`` value (0 train, 1 val)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the label list {path}: {err}") from None
    reader = csv.reader(text.splitlines(keepends=True), dialect=_dialect(path, text))
    header = [name.strip() for name in next(reader, [])]
    if not any(header):
        raise DataError(f"{path} is empty: a label list needs a header row (e.g. 'path,label') and one row per image")
    table = [(reader.line_num, values) for values in reader if any(v.strip() for v in values)]
    if not table:
        raise DataError(f"{path} lists no images: add one row per image under its header ({','.join(header)})")
    label_at = _label_column(path, header, label_column)
    split_at = _find_column(header, SPLIT_COLUMN)
    path_at = _path_column(path, header, table, path_column, exclude={label_at, split_at})
    rows = []
    for line, values in table:
        if len(values) != len(header):
            raise DataError(f"{path}, line {line}: {len(values)} values for {len(header)} columns "
                            f"({','.join(header)}); quote values that contain the delimiter")
        written, label = values[path_at].strip(), values[label_at].strip()
        if not written:
            raise DataError(f"{path}, line {line}: the {header[path_at]!r} column is empty; every row names an image")
        if not label:
            raise DataError(f"{path}, line {line}: empty label in column {header[label_at]!r} for {written}; "
                            "give every image its class or remove the row")
        split = default_split if split_at is None else _split_code(path, line, values[split_at], default_split)
        file = _resolve(path, written)
        try:
            stat = file.stat()
            size, mtime_ns = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime_ns = -1, 0
        rows.append(ListedImage(file, written, path.name, line, label, split, size, mtime_ns))
    return rows


def _dialect(path: Path, text: str):
    if path.suffix.lower() == ".tsv":
        return csv.excel_tab
    try:
        return csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:  # a single column, or too little text to tell: the CSV standard's comma
        return csv.excel


def _find_column(header: list[str], name: str) -> Optional[int]:
    lowered = [h.lower() for h in header]
    return lowered.index(name.lower()) if name.lower() in lowered else None


def _label_column(path: Path, header: list[str], label_column: Optional[str]) -> int:
    if label_column is not None:
        at = _find_column(header, label_column)
        if at is None:
            raise DataError(f"--label-column {label_column!r} is not a column of {path}; "
                            f"its columns are {', '.join(header)}")
        return at
    for name in LABEL_COLUMNS:
        at = _find_column(header, name)
        if at is not None:
            return at
    raise DataError(f"{path} has no label column ({', '.join(LABEL_COLUMNS)}); its columns are "
                    f"{', '.join(header)}. Name the one that holds the classes with --label-column")


def _path_column(path: Path, header: list[str], table, path_column: Optional[str], exclude: set) -> int:
    if path_column is not None:
        at = _find_column(header, path_column)
        if at is None:
            raise DataError(f"--path-column {path_column!r} is not a column of {path}; "
                            f"its columns are {', '.join(header)}")
        return at
    probe = [values for _, values in table[:PATH_PROBE_ROWS]]
    found = {}
    for at in range(len(header)):
        if at not in exclude:
            found[at] = sum(1 for values in probe if at < len(values) and values[at].strip()
                            and _resolve(path, values[at].strip()).is_file())
    best = max(found, key=lambda at: found[at], default=None)
    if best is None or found[best] == 0:
        raise DataError(f"no column of {path} names image files that exist (looked at {', '.join(header)} in the "
                        f"first {len(probe)} rows; paths are relative to {path.parent} or absolute). "
                        "Fix the paths, or name the column with --path-column")
    return best


def _resolve(list_path: Path, written: str) -> Path:
    return (list_path.parent / Path(written).expanduser()).resolve()


def _split_code(path: Path, line: int, value: str, default: int) -> int:
    value = value.strip().lower()
    if not value:
        return default
    if value not in SPLIT_VALUES:
        raise DataError(f"{path}, line {line}: split {value!r} is not one of train, val, test")
    return SPLIT_VALUES[value]


def _index_labels(lists: list[Path], rows: list[ListedImage]) -> tuple[list[str], list[int]]:
    """Class names from the training rows, and each row's label index. A class seen only in the
    validation or test rows is an error: the model would have no output for it."""
    names, index = label_vocabulary([row.label for row in rows if row.split == 0])
    if not names:
        raise DataError(f"{lists[0]} has no training rows (every row's split is val or test)")
    unknown: dict[str, ListedImage] = {}  # a label missing from the training rows -> its first row
    for row in rows:
        if row.label not in index:
            (canonical,), _ = label_vocabulary([row.label])  # "07" where the training rows say "7"
            if canonical in names:
                index[row.label] = names.index(canonical)
            else:
                unknown.setdefault(row.label, row)
    if unknown:
        where = "; ".join(f"{label!r} ({SPLIT_NAMES[row.split]}, first at {row.list_name} line {row.line})"
                          for label, row in list(unknown.items())[:10])
        raise DataError(f"class{'es' if len(unknown) > 1 else ''} not in the training rows of {lists[0].name}: "
                        f"{where}. The model learns only the training classes: add training images of "
                        f"{'them' if len(unknown) > 1 else 'it'} or remove those rows")
    if len(names) < 2:
        raise DataError(f"{lists[0]} has only one class ({names[0]}); classification needs at least two")
    return names, [index[row.label] for row in rows]


def _hold_out(rows: list[ListedImage], labels: list[int], val_fraction: float) -> list[ListedImage]:
    train = [i for i, row in enumerate(rows) if row.split == 0]
    to_val = hold_out_by_name([str(rows[i].path) for i in train], [labels[i] for i in train], val_fraction)
    rows = list(rows)
    for i, held in zip(train, to_val):
        if held:
            rows[i] = dataclasses.replace(rows[i], split=1)
    return rows


def _file_sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _cache_folder(lists: list[Path], cache_dir: Path, settings: dict) -> Path:
    key = hashlib.sha1(json.dumps({"lists": [str(p) for p in lists], **settings}, sort_keys=True).encode())
    return cache_dir / "lists" / f"{lists[0].stem}-{key.hexdigest()[:16]}"


def _prepare(folder: Path, rows: list[ListedImage], labels: np.ndarray, class_names: list[str], settings: dict,
             record: dict, source: str, progress: bool, workers: Optional[int]) -> DataSplits:
    size = settings["image_size"]
    with CacheWriter(folder, len(rows), size) as writer:
        keep = decode_files([row.path for row in rows], writer, size, settings["resize"], progress=progress,
                            workers=workers, desc=f"preparing {Path(source).name}")
        split_codes = np.array([row.split for row in rows], dtype=np.int64)
        _check_no_class_lost(source, rows, labels, class_names, keep)
        mean, std = channel_stats(writer.images, rows=np.flatnonzero(keep & (split_codes == 0)))
        manifest = {"source": source, "settings": settings, "image_size": size, "class_names": class_names,
                    "splits": split_bounds(split_codes[keep]), "mean": mean, "std": std,
                    "skipped": [row.skipped_as() for row, ok in zip(rows, keep) if not ok], "list_record": record}
        writer.finish(labels, keep, manifest)
    return open_prepared(folder, source=source)


def _check_no_class_lost(source: str, rows: list[ListedImage], labels: np.ndarray, class_names: list[str],
                         keep: np.ndarray) -> None:
    """A class whose every training image is missing or unreadable cannot be learned."""
    train = np.array([row.split == 0 for row in rows])
    for label, name in enumerate(class_names):
        members = train & (labels == label)
        if members.any() and not keep[members].any():
            examples = ", ".join(rows[i].skipped_as() for i in np.flatnonzero(members)[:3])
            raise DataError(f"none of the {int(members.sum())} training images of class {name!r} in {source} "
                            f"could be read ({examples}); fix the paths or the files")
