"""The checkpoint format, in one place: write, read, version, rebuild the model from a file.

Training writes it, ``weights.py`` loads weights from it, evaluate, predict and export rebuild
models from it.

A checkpoint holds everything needed to rebuild the model, preprocess an image the way training
did, and resume the run exactly (see ``docs/design.md`` for the keys). Only tensors, dicts, lists,
tuples, strings, numbers and ``None`` go in, so the file loads without unpickling arbitrary code.
"""
from __future__ import annotations

import copy
import os
import random
import threading
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from cnnzoo.errors import UserError
from cnnzoo.files import atomic_open
from cnnzoo.registry import check_model_args, get_model_info

FORMAT, VERSION = "cnnzoo-checkpoint", 1
PathLike = Union[str, os.PathLike]
# Present only in last.pt: what resuming needs beyond the weights (best.pt drops them).
RESUME_KEYS = ("optimizer_state", "scheduler_state", "scaler_state")


def training_checkpoint(*, model_name: str, model_args: dict, model: nn.Module, config: dict, task: str,
                        history: list, monitor: str, best_score: Optional[float], optimizer=None,
                        schedule=None, scaler=None, **task_fields: Any) -> dict[str, Any]:
    """A checkpoint of a run after ``len(history)`` epochs: the model and its arguments, what the task
    needs to use it (``task_fields``: class names and preprocessing for images), and what resuming
    needs. Every tensor is a copy: the file is written on another thread while training goes on."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "model_name": model_name,
        "model_args": dict(model_args),
        "model_state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "task": task,
        **task_fields,
        "config": dict(config),
        "history": copy.deepcopy(history),
        "epoch": len(history),  # epochs completed
        "epoch_complete": True,
        "monitor": monitor,
        # under the metric's own name too (best_val_acc for images): what a reader looks for
        f"best_{monitor}": best_score,
        "optimizer_state": copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None,
        "scheduler_state": schedule.state_dict() if schedule is not None else None,
        "scaler_state": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng_state": get_rng_state(),
    }


def without_resume_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The same snapshot for using the model (best.pt): no optimizer, schedule or scaler state."""
    return {**checkpoint, **{key: None for key in RESUME_KEYS}}


def best_score(checkpoint: dict[str, Any]) -> Optional[float]:
    """The best value of the run's monitored metric so far (checkpoints before tasks: val_acc)."""
    value = checkpoint.get(f"best_{checkpoint.get('monitor', 'val_acc')}")
    return None if value is None else float(value)  # a loss may be negative (Gaussian NLL)


def save_checkpoint(checkpoint: dict[str, Any], path: PathLike) -> None:
    """Write ``checkpoint`` to ``path`` so that a kill at any moment leaves either the old file or
    the new one, never a truncated one (fsynced: a checkpoint must survive a power cut too)."""
    with atomic_open(path, durable=True) as f:
        torch.save(checkpoint, f)


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


def read_torch_file(path: PathLike, what: str = "checkpoint", *, error: type = UserError,
                    hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code. A
    missing, truncated or foreign file raises ``error`` naming ``what`` and the path, plus ``hint``."""
    path = Path(path)
    if not path.is_file():
        where = " (it is a folder: name the .pt file inside, e.g. best.pt)" if path.is_dir() else ""
        raise error(f"{what} {str(path)!r} does not exist{where}{'; ' + hint if hint else ''}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated, foreign or pickled-code file
        first_line = str(err).splitlines()[0][:200] if str(err) else ""
        raise error(f"cannot read {what} {str(path)!r}: the file is corrupt, not a PyTorch file, or holds "
                    f"more than tensors ({type(err).__name__}: {first_line}){'. ' + hint if hint else ''}") from None


def is_checkpoint(obj: Any) -> bool:
    """Whether ``obj`` (a loaded file) is a cnnzoo checkpoint rather than a bare state dict."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def check_version(checkpoint: dict, path: PathLike) -> dict:
    if checkpoint.get("version", 0) > VERSION:
        raise UserError(f"{str(path)!r} was written by a newer cnnzoo (checkpoint version "
                        f"{checkpoint['version']}, this one reads up to {VERSION}); upgrade cnnzoo")
    return checkpoint


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Read a cnnzoo checkpoint; a missing, corrupt or foreign file raises :class:`UserError`."""
    checkpoint = read_torch_file(path)
    if not is_checkpoint(checkpoint):
        raise UserError(f"{str(path)!r} is not a cnnzoo checkpoint (no format={FORMAT!r} key); "
                        "checkpoints are written by `cnnzoo train` as best.pt and last.pt")
    return check_version(checkpoint, path)


def require_task(checkpoint: dict[str, Any], task: str, path: Any, instead: str) -> None:
    """Refuse, with a message saying what to use instead, a checkpoint of another task (a WaveNet
    checkpoint given to ``cnnzoo evaluate``, an image model to ``cnnzoo generate``)."""
    found = checkpoint.get("task", "image")  # checkpoints from before tasks are image classifiers
    if found != task:
        raise UserError(f"{str(path)!r} is a checkpoint of a {found} model ({checkpoint.get('model_name')}); "
                        f"this command takes {task} models. {instead}")


def build_model_from_checkpoint(checkpoint: dict[str, Any]) -> nn.Module:
    """The model a checkpoint describes, with its weights loaded, in eval mode."""
    name, args = checkpoint["model_name"], dict(checkpoint["model_args"])
    check_model_args(name, args)
    model = get_model_info(name).builder(**args)
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
