"""Writing output files so that a reader, a crash or a Ctrl-C never sees half of one.

Every writer goes to a temporary file in the same folder and then ``os.replace``s it onto the
target, which is atomic on POSIX and Windows within one file system. This module is the only place
in cnnzoo that does so: checkpoints, histories, reports, figures, the data cache and downloads all
come through here.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path
from typing import BinaryIO, Iterator, Union

PathLike = Union[str, os.PathLike]


def list_files(root: PathLike, extensions) -> list[Path]:
    """Files under ``root`` whose suffix (any case) is one of ``extensions``: recursive, following
    links, in sorted order, hidden files and folders skipped. What image and audio folders read."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(os.fspath(root), followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames)
                     if not f.startswith(".") and Path(f).suffix.lower() in extensions)
    return found


def temporary_path(path: PathLike) -> Path:
    """A hidden name beside ``path``, unique to this process, for a file that becomes ``path`` later
    through :func:`publish`."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def publish(tmp: PathLike, path: PathLike, *, durable: bool = False) -> None:
    """Move a finished temporary file onto ``path`` in one step. ``durable``: fsync the file and its
    folder first, so that the new file (and not an empty one) survives a power cut - worth it for
    checkpoints, not for a report that is rewritten after every model."""
    if durable:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        _fsync_directory(Path(path).parent)


@contextlib.contextmanager
def atomic_open(path: PathLike, *, durable: bool = False) -> Iterator[BinaryIO]:
    """``with atomic_open(p) as f: torch.save(obj, f)``: ``p`` appears complete when the block ends
    normally and is left as it was when the block raises (a kill leaves at most a hidden temporary)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            yield f
        publish(tmp, path, durable=durable)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: PathLike, data: bytes, *, durable: bool = False) -> None:
    with atomic_open(path, durable=durable) as f:
        f.write(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_figure(fig, path: PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure atomically as PNG and close it (if pyplot made it)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    pyplot = sys.modules.get("matplotlib.pyplot")  # a figure made outside pyplot (display.new_figure) needs no closing
    if pyplot is not None:
        pyplot.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable across a power cut; not possible (nor needed) on Windows.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
