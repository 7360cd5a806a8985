"""Self-describing checkpoints, written atomically and read back with ``weights_only=True``.

A checkpoint holds everything needed to rebuild the model, preprocess an image the way training
did, and resume the run exactly (see ``docs/design.md`` for the keys). Only tensors, dicts, lists,
tuples, strings, numbers and ``None`` go in, so the file loads without unpickling arbitrary code.
"""
from __future__ import annotations

import os
import random
import threading
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from cnnzoo.errors import UserError

FORMAT, VERSION = "cnnzoo-checkpoint", 1
PathLike = Union[str, os.PathLike]


def save_checkpoint(checkpoint: dict[str, Any], path: PathLike) -> None:
    """Write ``checkpoint`` to ``path`` so that a kill at any moment leaves either the old file or
    the new one, never a truncated one: write a temporary file beside it, fsync, then rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows when both are on the same file system
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_directory(path.parent)


class BackgroundWriter:
    """Writes checkpoints on a worker thread, so the next epoch trains during serialisation and
    fsync (about a quarter of an epoch on a small folder). One batch of writes in flight at a time;
    each write is still atomic, so a kill mid-write leaves the previous file. Callers pass states
    that share no tensor with the live model or optimizer (see ``snapshot``)."""

    def __init__(self):
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def submit(self, jobs: list[tuple[dict, Path]]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(jobs,), name="cnnzoo-checkpoint")
        self._thread.start()

    def _write(self, jobs) -> None:
        try:
            for state, path in jobs:
                save_checkpoint(state, path)
        except BaseException as err:  # re-raised in the training thread by wait()
            self._error = err

    def wait(self) -> None:
        """Block until the writes in flight are on disk; re-raise their error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err


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


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """Read a cnnzoo checkpoint; a missing, corrupt or foreign file raises :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        hint = " (it is a folder: name the .pt file inside, e.g. best.pt)" if path.is_dir() else ""
        raise UserError(f"checkpoint {str(path)!r} does not exist{hint}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or non-torch file
        raise UserError(f"cannot read checkpoint {str(path)!r}: the file is corrupt or not a "
                        f"PyTorch file ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise UserError(f"{str(path)!r} is not a cnnzoo checkpoint (no format={FORMAT!r} key); "
                        "checkpoints are written by `cnnzoo train` as best.pt and last.pt")
    if checkpoint.get("version", 0) > VERSION:
        raise UserError(f"{str(path)!r} was written by a newer cnnzoo (checkpoint version "
                        f"{checkpoint['version']}, this one reads up to {VERSION}); upgrade cnnzoo")
    return checkpoint


def build_model_from_checkpoint(checkpoint: dict[str, Any]) -> nn.Module:
    """The model a checkpoint describes, with its weights loaded, in eval mode."""
    from cnnzoo.registry import create_model

    model = create_model(checkpoint["model_name"], **checkpoint["model_args"])
    model.load_state_dict(checkpoint["model_state"])
    return model.eval()


# --- random number generator states, as plain lists/tensors so weights_only loading accepts them ---

def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Optional[dict[str, Any]]) -> None:
    """Restore what :func:`get_rng_state` captured."""
    if not state:
        return
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
