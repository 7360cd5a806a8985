"""Image folders: ``root/<class>/*.jpg`` or ``root/train/<class>/...`` (+ ``val/``, ``test/``).

Preparation decodes every image once, in parallel, straight into the memmap cache; later loads
only check that the files (names, sizes, modification times) and settings are unchanged and open
the memmap. Files that are not images are ignored; images that cannot be decoded are skipped
and listed in one warning.

Which images of a class folder go to val (without a val/ folder) depends only on a hash of
their names: the same files whatever the seed, so runs with different seeds share a val set.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from cnnzoo.data.cache import CacheWriter, open_prepared, open_splits, read_manifest, split_bounds
from cnnzoo.data.decode import IMAGE_EXTENSIONS, decode_image
from cnnzoo.data.splits import DataError, DataSplits, channel_stats, hold_out_by_name
from cnnzoo.display import steps_bar
from cnnzoo.files import list_files

FOLDER_DEFAULT_SIZE = 64
SPLIT_FOLDER_NAMES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
MAX_LISTED = 20  # skipped files named in the warning; the manifest keeps them all
# Below these, starting processes costs more than it saves (measured with benchmarks/bench_data.py).
PROCESS_MIN_FILES = 256
PROCESS_MIN_WORKERS = 4
PROCESS_CHUNK = 32  # files per task sent to a worker process

# One task of decode_files: the cache's images (the array, or its .npy path for a forked worker to
# open), the first row, the files for that row on, the side, the resize mode.
DecodeTask = tuple[Union[np.ndarray, str], int, Sequence[Union[Path, str]], int, str]


class SkippedImagesWarning(UserWarning):
    """Some image files could not be decoded and were left out."""


@dataclass(frozen=True)
class ImageFile:
    relpath: str  # relative to the dataset root, '/'-separated
    label: int
    split: int  # 0 train, 1 val, 2 test (the order rows are stored in)
    size: int
    mtime_ns: int


def find_split_folders(root: Path) -> dict[str, Path]:
    """``{"train": root}`` for a plain class layout, else the train/val/test folders that exist."""
    if not (root / "train").is_dir():
        return {"train": root}
    found = {}
    for split, names in SPLIT_FOLDER_NAMES.items():
        for name in names:
            if (root / name).is_dir():
                found[split] = root / name
                break
    return found


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted); other files are ignored."""
    return list_files(folder, IMAGE_EXTENSIONS)


def scan_classes(folder: Path) -> dict[str, list[Path]]:
    """``{class name: image paths}`` for one split folder; errors name the folder at fault."""
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"no class folders in {folder}: expected {folder}/<class name>/<images>")
    classes = {d.name: list_images(d) for d in class_dirs}
    empty = [str(folder / name) for name, files in classes.items() if not files]
    if empty:
        raise DataError(f"class folder{'s' if len(empty) > 1 else ''} with no images: {', '.join(empty)}. "
                        f"Add images (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}) or remove the folder.")
    if len(classes) < 2:
        raise DataError(f"{folder} has only one class folder ({class_dirs[0].name}); "
                        f"classification needs at least two")
    return classes


def check_same_classes(train_folder: Path, other_folder: Path, train: list[str], other: list[str]) -> None:
    if train == other:
        return
    problems = []
    missing, extra = sorted(set(train) - set(other)), sorted(set(other) - set(train))
    if missing:
        problems.append(f"missing from {other_folder}: {', '.join(missing)}")
    if extra:
        problems.append(f"not in {train_folder}: {', '.join(extra)}")
    raise DataError(f"the classes of {other_folder} differ from those of {train_folder} ({'; '.join(problems)}). "
                    f"Every split needs the same class folders.")


def scan_folder(root: Path, val_fraction: float) -> tuple[list[str], list[ImageFile]]:
    """Class names and every image file of the dataset, in storage order (train, then val, then test)."""
    folders = find_split_folders(root)
    per_split = {split: scan_classes(folder) for split, folder in folders.items()}
    class_names = sorted(per_split["train"])
    for split in ("val", "test"):
        if split in per_split:
            check_same_classes(folders["train"], folders[split], class_names, sorted(per_split[split]))
    assigned: list[tuple[int, int, Path]] = []  # (split code, label, path)
    for code, split in enumerate(("train", "val", "test")):
        for label, name in enumerate(class_names):
            for path in per_split.get(split, {}).get(name, []):
                assigned.append((code, label, path))
    if "val" not in per_split and val_fraction > 0:
        assigned = _hold_out_val(assigned, root, val_fraction)
    assigned.sort(key=lambda item: item[0])  # stable: keeps class and path order within a split
    files = []
    for code, label, path in assigned:
        stat = path.stat()
        files.append(ImageFile(path.relative_to(root).as_posix(), label, code, stat.st_size, stat.st_mtime_ns))
    return class_names, files


def _hold_out_val(assigned, root: Path, val_fraction: float):
    """Move ``val_fraction`` of each train class to val, chosen by a hash of the file name."""
    out = [item for item in assigned if item[0] != 0]
    train = [item for item in assigned if item[0] == 0]
    to_val = hold_out_by_name([path.relative_to(root).as_posix() for _, _, path in train],
                              [label for _, label, _ in train], val_fraction)
    out.extend((1 if held else 0, label, path) for (_, label, path), held in zip(train, to_val))
    out.sort(key=lambda item: (item[0], item[1], item[2]))
    return out


def cache_folder_for(root: Path, cache_dir: Path, settings: dict) -> Path:
    key = hashlib.sha1(json.dumps({"root": str(root), **settings}, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / "folders" / f"{root.name or 'root'}-{key}"


def _files_record(files: list[ImageFile]) -> list:
    return [[f.relpath, f.size, f.mtime_ns] for f in files]


def load_folder(root: Path, cache_dir: Path, *, image_size: Optional[int] = None, val_fraction: float = 0.2,
                resize: str = "shorter_crop", progress: bool = True, workers: Optional[int] = None,
                executor: str = "auto") -> DataSplits:
    """A prepared image folder: reused from the cache when files and settings are unchanged.

    ``workers`` and ``executor`` set how preparation decodes in parallel (see :func:`decode_files`).
    """
    root = Path(root).resolve()
    size = image_size or FOLDER_DEFAULT_SIZE
    class_names, files = scan_folder(root, val_fraction)
    has_val_folder = "val" in find_split_folders(root)
    settings = {"image_size": size, "resize": resize,
                "val_fraction": None if has_val_folder else val_fraction}
    folder = cache_folder_for(root, Path(cache_dir), settings)
    manifest = read_manifest(folder)
    if manifest and manifest.get("settings") == settings and manifest.get("files") == _files_record(files):
        splits = open_splits(folder, manifest, source=str(root))
    else:
        splits = prepare_folder(root, folder, class_names, files, settings, progress, workers, executor)
    if splits.skipped:
        warn_skipped(root, splits.skipped)
    return splits


def prepare_folder(root: Path, folder: Path, class_names: list[str], files: list[ImageFile], settings: dict,
                   progress: bool, workers: Optional[int], executor: str = "auto") -> DataSplits:
    """Decode every file into a new cache in ``folder`` and return it opened."""
    size = settings["image_size"]
    with CacheWriter(folder, len(files), size) as writer:
        keep = decode_files([root / f.relpath for f in files], writer, size, settings["resize"], progress=progress,
                            workers=workers, executor=executor, desc=f"preparing {root.name}")
        labels = np.array([f.label for f in files], dtype=np.int64)
        split_codes = np.array([f.split for f in files], dtype=np.int64)
        _check_no_class_lost(root, files, class_names, keep)
        bounds = split_bounds(split_codes[keep])
        mean, std = channel_stats(writer.images, rows=np.flatnonzero(keep & (split_codes == 0)))
        manifest = {"source": str(root), "settings": settings, "image_size": size, "class_names": class_names,
                    "splits": bounds, "mean": mean, "std": std,
                    "skipped": [f.relpath for f, ok in zip(files, keep) if not ok],
                    "files": _files_record(files)}
        writer.finish(labels, keep, manifest)
    return open_prepared(folder, source=str(root))


def decode_files(paths: list[Path], writer: CacheWriter, size: int, resize: str, *, progress: bool = True,
                 workers: Optional[int] = None, executor: str = "auto", desc: str = "decoding") -> np.ndarray:
    """Decode ``paths[i]`` into ``writer.images[i]`` in parallel; returns the mask of files that decoded.

    ``executor``: ``"processes"`` (forked workers that open the cache file themselves and write their
    rows), ``"threads"``, or ``"auto"``: processes on Linux for ``PROCESS_MIN_FILES`` files or more and
    ``PROCESS_MIN_WORKERS`` workers or more, else threads. Pillow releases the GIL while decoding and
    resizing, but opening a file and the mode and EXIF handling hold it: in benchmarks/bench_data.py,
    8 processes prepared 1.2-2x more images/s than 8 threads (about equal with 2). Forking is what
    torch's DataLoader does on Linux too; the workers only run Pillow and numpy.
    """
    workers = workers or os.cpu_count() or 1
    if executor == "auto":
        use_processes = (workers >= PROCESS_MIN_WORKERS and len(paths) >= PROCESS_MIN_FILES
                         and sys.platform == "linux")
        executor = "processes" if use_processes else "threads"
    keep = np.ones(len(paths), dtype=bool)
    bar = steps_bar(len(paths), desc=desc, unit="img", progress=progress)
    pool: Executor
    tasks: list[DecodeTask]
    if executor == "processes":
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        starts = range(0, len(paths), PROCESS_CHUNK)
        tasks = [(str(writer.images_path), start, [str(p) for p in paths[start:start + PROCESS_CHUNK]], size, resize)
                 for start in starts]
    else:
        pool = ThreadPoolExecutor(workers)
        tasks = [(writer.images, start, paths[start:start + 1], size, resize) for start in range(len(paths))]
    try:
        for (_, _, chunk, _, _), failed in zip(tasks, pool.map(_decode_rows, tasks)):
            keep[failed] = False
            bar.update(len(chunk))
    finally:  # on Ctrl-C, drop the queued files instead of decoding them all before stopping
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return keep


def _decode_rows(task: DecodeTask) -> list[int]:
    """Decode consecutive files into rows ``start, start + 1, ...``; returns the rows that failed.

    ``images`` is the array itself (threads) or the path of the ``.npy`` file (processes: each opens
    its own writable memmap of the same file; the pages are shared, so the parent sees the rows).
    """
    images, start, paths, size, resize = task
    if isinstance(images, str):
        images = np.load(images, mmap_mode="r+")
    failed = []
    for row, path in enumerate(paths, start):
        try:
            images[row] = decode_image(path, size, resize)
        except Exception:  # Pillow raises many kinds (OSError, SyntaxError, ValueError...) for bad files
            failed.append(row)
    return failed


def _check_no_class_lost(root: Path, files: list[ImageFile], class_names, keep: np.ndarray) -> None:
    """A class whose every image in a split failed to decode is as bad as an empty class folder."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, f in enumerate(files):
        groups.setdefault((f.split, f.label), []).append(index)
    for (_, label), members in groups.items():
        if not keep[members].any():
            folder = root / Path(files[members[0]].relpath).parent
            raise DataError(f"none of the {len(members)} images in {folder} (class {class_names[label]!r}) "
                            f"could be read; replace or remove them")


def warn_skipped(where, skipped: list[str], what: str = "unreadable image file") -> None:
    """One warning naming the first ``MAX_LISTED`` of the ``skipped`` items found in ``where``."""
    listed = ", ".join(skipped[:MAX_LISTED])
    more = ""
    if len(skipped) > MAX_LISTED:
        more = f" and {len(skipped) - MAX_LISTED} more (all listed in the cache manifest)"
    warnings.warn(f"skipped {len(skipped)} {what}{'s' if len(skipped) > 1 else ''} in {where}: "
                  f"{listed}{more}", SkippedImagesWarning, stacklevel=3)
