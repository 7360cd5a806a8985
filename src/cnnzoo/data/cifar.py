"""CIFAR-10 and CIFAR-100 from their official python-pickle archives.

The archive is looked for in the cache folder, downloaded from the official address when missing,
and always checked against its published md5 before anything in it is unpickled. The pixels are
then stored in the same memmap cache as image folders, so later loads skip the archive entirely.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from cnnzoo.data.builtin import resize_batch
from cnnzoo.data.cache import CacheWriter, open_prepared, open_splits, read_manifest, split_bounds
from cnnzoo.data.splits import DataError, DataSplits, channel_stats, stratified_split
from cnnzoo.display import steps_bar

CIFAR_DEFAULT_SIZE = 32


@dataclass(frozen=True)
class CifarArchive:
    archive: str  # file name of the official archive
    url: str
    md5: str  # published on https://www.cs.toronto.edu/~kriz/cifar.html
    folder: str  # the folder inside the archive
    train_files: tuple
    test_files: tuple
    meta_file: str
    names_key: bytes
    labels_key: bytes


CIFAR_ARCHIVES = {
    "cifar10": CifarArchive("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                            "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py",
                            tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "batches.meta",
                            b"label_names", b"labels"),
    "cifar100": CifarArchive("cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                             "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python", ("train",), ("test",), "meta",
                             b"fine_label_names", b"fine_labels"),
}


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, progress: bool = True) -> None:
    """Fetch ``url`` into ``dest`` (through a temporary name, so a broken download leaves nothing)."""
    tmp = dest.with_name(f".{dest.name}.part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with steps_bar(total, unit="B", unit_scale=True, desc=f"downloading {dest.name}",
                           progress=progress) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fetch_archive(info: CifarArchive, cache_dir: Path, progress: bool) -> Path:
    """The verified archive in ``cache_dir``: downloaded if missing; an error saying what to do if not possible."""
    path = cache_dir / info.archive
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            download(info.url, path, progress)
        except (urllib.error.URLError, OSError) as err:
            raise DataError(f"could not download {info.url} ({err}). If this machine is offline, download "
                            f"{info.archive} elsewhere and place it at {path} (md5 {info.md5}).") from None
    actual = file_md5(path)
    if actual != info.md5:
        raise DataError(f"{path} has md5 {actual}, but the official {info.archive} has {info.md5}: the file is "
                        f"damaged or not the official archive. Delete it to download it again, or put the "
                        f"official archive there.")
    return path


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR's files contain (dicts, lists, bytes, numpy arrays), nothing callable."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}  # how pickle protocol 2 spells bytes when written by Python 3

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR files contain no {module}.{name}; refusing to load it")


def _read_pickle(tar: tarfile.TarFile, member: str) -> dict:
    try:
        stream = tar.extractfile(member)
    except KeyError:
        stream = None
    if stream is None:
        raise DataError(f"{str(tar.name)} has no {member}: not a CIFAR python archive")
    data = stream.read()
    try:
        return _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise DataError(f"cannot read {member} in {str(tar.name)}: {err}") from None


def read_archive(info: CifarArchive, path: Path) -> tuple[list[str], dict]:
    """Class names and ``{"train": (images, labels), "test": (images, labels)}`` from the archive."""
    with tarfile.open(path, "r:gz") as tar:
        meta = _read_pickle(tar, f"{info.folder}/{info.meta_file}")
        names = [n.decode() for n in meta[info.names_key]]
        parts = {}
        for split, members in (("train", info.train_files), ("test", info.test_files)):
            batches = [_read_pickle(tar, f"{info.folder}/{m}") for m in members]
            images = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
            labels = np.concatenate([np.asarray(b[info.labels_key], dtype=np.int64) for b in batches])
            parts[split] = (images.reshape(-1, 3, 32, 32), labels)  # rows are R, G, B planes of 32 x 32
    return names, parts


def load_cifar(name: str, cache_dir: Path, *, image_size: Optional[int] = None, val_fraction: float = 0.2,
               seed: int = 0, resize: str = "shorter_crop", progress: bool = True) -> DataSplits:
    """CIFAR as train (less ``val_fraction`` held out by ``seed``), val and the official test split.

    ``resize`` does not matter here: CIFAR images are square, so every mode is a plain resize.
    """
    info = CIFAR_ARCHIVES[name]
    cache_dir = Path(cache_dir)
    size = image_size or CIFAR_DEFAULT_SIZE
    settings = {"image_size": size, "val_fraction": val_fraction, "seed": seed if val_fraction > 0 else None}
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir / "cifar" / f"{name}-{key}"
    archive = cache_dir / info.archive
    manifest = read_manifest(folder)
    # The cache was built from a verified archive: reuse it while that archive file is unchanged (same
    # size and time, so no re-hash), or gone (deleting the 170 MB archive after preparing is fine).
    if manifest and manifest.get("settings") == settings and manifest.get("archive", [None])[0] == info.md5:
        if not archive.exists() or manifest["archive"][1:] == [archive.stat().st_size, archive.stat().st_mtime_ns]:
            return open_splits(folder, manifest, source=name)
    archive = fetch_archive(info, cache_dir, progress)
    class_names, parts = read_archive(info, archive)
    train_images, train_labels = parts["train"]
    train_idx, val_idx = stratified_split(train_labels, val_fraction, seed)
    ordered = [(train_images[train_idx], train_labels[train_idx]), (train_images[val_idx], train_labels[val_idx]),
               parts["test"]]
    labels = np.concatenate([lab for _, lab in ordered])
    split_codes = np.concatenate([np.full(len(lab), code) for code, (_, lab) in enumerate(ordered)])
    with CacheWriter(folder, len(labels), size) as writer:
        row = 0
        for images, _ in ordered:
            for start in range(0, len(images), 2048):  # chunks: a large image_size need not fit in memory
                chunk = resize_batch(images[start:start + 2048], size)
                writer.images[row:row + len(chunk)] = chunk
                row += len(chunk)
        mean, std = channel_stats(writer.images[:len(train_idx)])
        stat = archive.stat()
        writer.finish(labels, np.ones(len(labels), bool), {
            "source": name, "settings": settings, "image_size": size, "class_names": class_names,
            "splits": split_bounds(split_codes), "mean": mean, "std": std,
            "archive": [info.md5, stat.st_size, stat.st_mtime_ns]})
    return open_prepared(folder, source=name)
