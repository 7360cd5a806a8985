"""The checkpoint format, in one place: the records, write, read, version, migration, rebuild.

Training writes a :class:`Checkpoint`; ``weights.py`` loads weights from one; evaluate, predict,
features, export, generate and forecast rebuild models from one. Nothing else reads the file's keys:
they are turned into records here (:meth:`Checkpoint.from_dict`) and back (:meth:`Checkpoint.to_dict`).

A checkpoint holds everything needed to rebuild the model, feed it the way training did (the task's
fields: :class:`ImageFields`, :class:`AudioFields`, :class:`SeriesFields`) and resume the run exactly
(:class:`ResumeState`). Only tensors, dicts, lists, tuples, strings, numbers and ``None`` go in, so
the file loads without unpickling arbitrary code (``weights_only=True``). Files of an older version
go through :func:`migrate` (the only place that knows version 1), then the same reader.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import random
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

import numpy as np
import torch
from torch import nn

from cnnzoo.config import TrainConfig
from cnnzoo.errors import UserError
from cnnzoo.files import atomic_open
from cnnzoo.preprocessing import Preprocessing
from cnnzoo.registry import check_model_args, get_model_info

FORMAT, VERSION = "cnnzoo-checkpoint", 2
PathLike = Union[str, os.PathLike]
_THROUGHPUT = re.compile(r"^train_(\w+)s_per_s$")  # history's train_<unit>s_per_s column
EMA_PREFIX = "val_ema_"  # history's columns of the weights' moving average's validation metrics


# ------------------------------------------------------------------------------ history rows

@dataclass(frozen=True)
class EpochRecord:
    """One epoch of a run: what ``history.json``/``history.csv`` hold a row of.

    ``train``, ``val`` and ``test`` map a metric name ("loss", "acc", "mae"...) to its value; ``test``
    is empty unless the task scored a test split. ``lr`` is the first parameter group's rate,
    ``lr_groups`` each group's when there are several (fine-tuning with --backbone-lr-scale),
    ``throughput`` training items per second in the task's unit, ``event`` what changed at the
    epoch's start (gradual fine-tuning unfreezing the backbone), if anything. ``val_ema``: the
    validation metrics of the weights' moving average (``--ema``; empty without it, and then absent
    from the row, so history files of runs without EMA are as before).
    """

    epoch: int
    train: dict[str, float]
    val: dict[str, float]
    lr: float
    epoch_time: float
    throughput: float
    elapsed: float
    test: dict[str, float] = field(default_factory=dict)
    lr_groups: dict[str, float] = field(default_factory=dict)
    event: Optional[str] = None
    val_ema: dict[str, float] = field(default_factory=dict)

    def metric(self, name: str) -> float:
        """A metric by its history name: ``"val_acc"`` is ``val["acc"]``, ``"val_ema_acc"`` ``val_ema["acc"]``."""
        split, _, metric = name.partition("_")
        if name.startswith(EMA_PREFIX):
            split, metric = "val_ema", name[len(EMA_PREFIX):]
        splits = {"train": self.train, "val": self.val, "test": self.test, "val_ema": self.val_ema}
        if split not in splits or metric not in splits[split]:
            raise KeyError(f"epoch {self.epoch} has no metric {name!r}")
        return splits[split][metric]

    def to_dict(self, unit: str) -> dict[str, Any]:
        """The flat row history files hold: ``epoch, train_<m>..., val_<m>..., lr, epoch_time,
        train_<unit>s_per_s, elapsed`` (then ``test_<m>``, ``lr_groups``, ``event`` when present)."""
        row: dict[str, Any] = {"epoch": self.epoch, **{f"train_{k}": v for k, v in self.train.items()},
                               **{f"val_{k}": v for k, v in self.val.items()}, "lr": self.lr,
                               "epoch_time": self.epoch_time, throughput_key(unit): self.throughput,
                               "elapsed": self.elapsed, **{f"test_{k}": v for k, v in self.test.items()},
                               **{f"{EMA_PREFIX}{k}": v for k, v in self.val_ema.items()}}
        if self.lr_groups:
            row["lr_groups"] = dict(self.lr_groups)
        if self.event:
            row["event"] = self.event
        return row

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "EpochRecord":
        """Read back a :meth:`to_dict` row (version-1 checkpoints' rows are the same)."""
        splits: dict[str, dict[str, float]] = {"train": {}, "val": {}, "test": {}}
        val_ema: dict[str, float] = {}
        throughput = 0.0
        for key, value in row.items():
            if _THROUGHPUT.match(key):
                throughput = float(value)
                continue
            if key.startswith(EMA_PREFIX):
                val_ema[key[len(EMA_PREFIX):]] = float(value)
                continue
            split, _, metric = key.partition("_")
            if split in splits and metric and key != "epoch_time":
                splits[split][metric] = float(value)
        return cls(epoch=int(row["epoch"]), train=splits["train"], val=splits["val"], lr=float(row["lr"]),
                   epoch_time=float(row["epoch_time"]), throughput=throughput, elapsed=float(row["elapsed"]),
                   test=splits["test"], lr_groups={k: float(v) for k, v in (row.get("lr_groups") or {}).items()},
                   event=row.get("event"), val_ema=val_ema)


def throughput_key(unit: str) -> str:
    """History's throughput column for a task counting ``unit`` items: ``train_images_per_s``."""
    return f"train_{unit}s_per_s"


def unit_of(rows: list[dict[str, Any]], default: str = "image") -> str:
    """The unit a history's throughput column counts (``train_windows_per_s`` -> "window")."""
    for key in (rows[0] if rows else {}):
        match = _THROUGHPUT.match(key)
        if match:
            return match.group(1)
    return default


# ------------------------------------------------------------------------------ task fields

@dataclass(frozen=True)
class ImageFields:
    """An image classifier's facts: its classes (output index -> name) and how to feed it an image."""

    kind: ClassVar[str] = "image"
    class_names: tuple[str, ...]
    preprocessing: Preprocessing

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    def to_dict(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names), "preprocessing": self.preprocessing.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ImageFields":
        return cls(tuple(values["class_names"]), Preprocessing.from_dict(values["preprocessing"]))


def _tuples(record: Any, names: tuple[str, ...]) -> None:
    """Freeze list-valued fields of a frozen record as tuples (a file gives lists)."""
    for name in names:
        value = getattr(record, name)
        if isinstance(value, list):
            object.__setattr__(record, name, tuple(tuple(v) if isinstance(v, list) else v for v in value))


@dataclass(frozen=True)
class AudioFields:
    """A WaveNet on mu-law audio: its receptive field and training window (samples), the context a
    validation window starts with, how many training samples the run had (resuming checks it), the
    sample rate, the mu-law levels, the files it learned from and the condition names (the folder
    each conditioning id stands for; empty unless --condition-on-folders)."""

    kind: ClassVar[str] = "audio"
    receptive_field: int
    window: int
    validation_context: int
    train_samples: int
    sample_rate: int
    quantization: int
    files: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()

    def __post_init__(self):
        _tuples(self, ("files", "conditions"))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "files": list(self.files), "conditions": list(self.conditions)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AudioFields":
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})


@dataclass(frozen=True)
class SeriesMember:
    """One series of several learned by one global model (a long file's id, a wide file's column):
    its own standardisation (after the transform), length, train/validation boundary, last three
    steps and ``tail``, its last receptive field (and the transform's lag) in the CSV's units."""

    name: str
    mean: float
    std: float
    length: int
    boundary: int
    last_steps: Optional[tuple[Any, ...]]
    tail: tuple[float, ...]

    def __post_init__(self):
        _tuples(self, ("last_steps", "tail"))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "tail": list(self.tail),
                "last_steps": None if self.last_steps is None else list(self.last_steps)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SeriesMember":
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class SeriesFields:
    """A WaveNet on a CSV series: receptive field, window, validation context and training samples as
    for audio; the columns modelled, the step column (None when the file has none), the per-column
    standardisation, the series' length and train/validation boundary, its last three steps (to
    continue them) and ``tail``, the last receptive field of values per column in the CSV's units
    (what a forecast from the series' end reads)."""

    kind: ClassVar[str] = "series"
    receptive_field: int
    window: int
    validation_context: int
    train_samples: int
    columns: tuple[str, ...]
    step_column: Optional[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    length: int
    boundary: int
    last_steps: Optional[tuple[Any, ...]]
    tail: tuple[tuple[float, ...], ...]
    # What the series went through before the standardisation (cnnzoo.data.series_transforms: a name
    # such as "log+seasonal-diff") and its seasonal period; "none" is what files before them did.
    transform: str = "none"
    season: int = 1
    # Several series learned by one global model (--id-column or --wide): one SeriesMember each,
    # with its own standardisation and tail, and the long file's id column (None for a wide one).
    # Then ``columns`` are the file's value column(s), and mean, std and tail describe no one series
    # (empty). No members: one series, as files before them.
    members: tuple[SeriesMember, ...] = ()
    id_column: Optional[str] = None

    def __post_init__(self):
        _tuples(self, ("columns", "mean", "std", "last_steps", "tail"))
        object.__setattr__(self, "members", tuple(m if isinstance(m, SeriesMember) else SeriesMember.from_dict(m)
                                                  for m in self.members))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "columns": list(self.columns), "mean": list(self.mean),
                "std": list(self.std), "last_steps": None if self.last_steps is None else list(self.last_steps),
                "tail": [list(row) for row in self.tail], "members": [m.to_dict() for m in self.members]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SeriesFields":
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})


TaskFields = Union[ImageFields, AudioFields, SeriesFields]
FIELD_KINDS: dict[str, Any] = {record.kind: record for record in (ImageFields, AudioFields, SeriesFields)}


# ------------------------------------------------------------------------------ the checkpoint

@dataclass(frozen=True)
class ResumeState:
    """What resuming needs beyond the weights: optimizer, schedule, gradient scaler and RNG states,
    and the weights' moving average (``ModelEma.state_dict()``, with ``--ema``)."""

    optimizer: dict[str, Any]
    scheduler: Optional[dict[str, Any]]
    scaler: Optional[dict[str, Any]]
    rng: dict[str, Any]
    ema: Optional[dict[str, Any]] = None

    def to_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler, "rng": self.rng,
                "ema": self.ema}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ResumeState":
        return cls(values["optimizer"], values.get("scheduler"), values.get("scaler"), values["rng"],
                   values.get("ema"))


@dataclass(frozen=True)
class Checkpoint:
    """A run after ``epoch`` epochs: the model (name, arguments, weights), what its task needs to use
    it (``fields``), the resolved config, the history, the monitored metric and its best value so
    far, and what resuming needs (``resume``; None in best.pt, which is for using the model).
    ``unit`` is what the task's throughput counts ("image", "window"). ``best_weights``: which weights
    ``model_state`` holds, "raw" (the trained ones) or "ema" (their moving average, when it validated better)."""

    model_name: str
    model_args: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    task: str
    fields: Optional[TaskFields]
    config: TrainConfig
    history: list[EpochRecord]
    monitor: str
    best_score: Optional[float]
    resume: Optional[ResumeState] = None
    unit: str = "image"
    best_weights: str = "raw"

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return len(self.history)

    @property
    def image(self) -> ImageFields:
        """The image fields (class names, preprocessing); an image checkpoint always has them."""
        if not isinstance(self.fields, ImageFields):
            raise UserError(f"the checkpoint of {self.model_name} holds no image preprocessing (task {self.task})")
        return self.fields

    def without_resume(self) -> "Checkpoint":
        """The same snapshot for using the model (best.pt): no optimizer, schedule, scaler or RNG state."""
        return dataclasses.replace(self, resume=None)

    def build_model(self) -> nn.Module:
        """The model this checkpoint describes, with its weights loaded, in eval mode."""
        args = dict(self.model_args)
        check_model_args(self.model_name, args)
        model = get_model_info(self.model_name).builder(**args)
        model.load_state_dict(self.model_state)
        return model.eval()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION,
            "model_name": self.model_name, "model_args": dict(self.model_args), "model_state": self.model_state,
            "task": self.task,
            "fields": None if self.fields is None else {"kind": self.fields.kind, **self.fields.to_dict()},
            "config": self.config.to_dict(),
            "unit": self.unit, "history": [r.to_dict(self.unit) for r in self.history],
            "epoch": self.epoch,  # for a reader without cnnzoo
            "monitor": self.monitor, "best_score": self.best_score,
            "resume": None if self.resume is None else self.resume.to_dict(),
            "best_weights": self.best_weights,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any], path: Optional[PathLike] = None) -> "Checkpoint":
        """A loaded file as a record: version-1 files are migrated first; a newer version is refused."""
        version = values.get("version", 0)
        if version > VERSION:
            raise UserError(f"{str(path or 'the checkpoint')!r} was written by a newer cnnzoo (checkpoint "
                            f"version {version}, this one reads up to {VERSION}); upgrade cnnzoo")
        if version < VERSION:
            values = migrate(values)
        fields_ = values["fields"]
        best = values["best_score"]
        return cls(
            model_name=values["model_name"], model_args=dict(values["model_args"]), model_state=values["model_state"],
            task=values["task"],
            fields=None if fields_ is None else FIELD_KINDS[fields_["kind"]].from_dict(fields_),
            config=TrainConfig.from_dict(values["config"]),
            history=[EpochRecord.from_dict(r) for r in values["history"]],
            monitor=values["monitor"], best_score=None if best is None else float(best),
            resume=None if values["resume"] is None else ResumeState.from_dict(values["resume"]),
            unit=values["unit"], best_weights=values.get("best_weights", "raw"))


def migrate(values: dict[str, Any]) -> dict[str, Any]:
    """A version-1 checkpoint's keys (``docs/design.md`` kept them) in version 2's layout. The one
    place that knows version 1; early version-1 files lack the task, config, history and monitor."""
    task = values.get("task", "image")  # checkpoints from before tasks are image classifiers
    monitor = values.get("monitor", "val_acc")
    if "preprocessing" in values:
        fields_ = {"kind": "image", "class_names": list(values.get("class_names", [])),
                   "preprocessing": values["preprocessing"]}
    elif "sequence" in values:
        sequence = dict(values["sequence"])
        fields_ = {"kind": "audio" if sequence.pop("kind") == "mulaw" else "series", **sequence}
    else:
        fields_ = None
    history = list(values.get("history") or [])
    config = values.get("config") or {"model": values["model_name"], "model_args": values.get("model_args") or {}}
    optimizer = values.get("optimizer_state")
    resume = None if optimizer is None else {"optimizer": optimizer, "scheduler": values.get("scheduler_state"),
                                             "scaler": values.get("scaler_state"), "rng": values.get("rng_state")}
    return {"format": FORMAT, "version": VERSION, "model_name": values["model_name"],
            "model_args": values.get("model_args") or {}, "model_state": values["model_state"], "task": task,
            "fields": fields_, "config": config, "history": history,
            "unit": unit_of(history, "image" if task == "image" else "window"),
            "monitor": monitor, "best_score": values.get(f"best_{monitor}"), "resume": resume}


def training_checkpoint(*, model_name: str, model_args: dict, model: nn.Module, config: TrainConfig, task: str,
                        fields: Optional[TaskFields], history: list[EpochRecord], monitor: str,
                        best_score: Optional[float], unit: str = "image", optimizer=None, schedule=None,
                        scaler=None, ema=None) -> Checkpoint:
    """A checkpoint of a run after ``len(history)`` epochs, with what resuming needs when an
    optimizer is given. Every tensor is a copy: the file is written on another thread while
    training goes on."""
    resume = None
    if optimizer is not None:
        resume = ResumeState(
            optimizer=copy.deepcopy(optimizer.state_dict()),
            scheduler=schedule.state_dict() if schedule is not None else None,
            scaler=scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
            rng=get_rng_state(),
            ema=None if ema is None else _cpu_copy(ema.state_dict()))
    return Checkpoint(
        model_name=model_name, model_args=dict(model_args),
        model_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        task=task, fields=fields, config=config, history=list(history), monitor=monitor,
        best_score=best_score, resume=resume, unit=unit)


def _cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict's tensors copied to the CPU (nested dicts too), for writing on another thread."""
    return {k: _cpu_copy(v) if isinstance(v, dict) else v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v
            for k, v in state.items()}


def save_checkpoint(checkpoint: Checkpoint, path: PathLike) -> None:
    """Write ``checkpoint`` to ``path`` so that a kill at any moment leaves either the old file or
    the new one, never a truncated one (fsynced: a checkpoint must survive a power cut too)."""
    payload = checkpoint.to_dict()
    with atomic_open(path, durable=True) as f:
        torch.save(payload, f)


class BackgroundWriter:
    """Writes checkpoints on a worker thread, so the next epoch trains during serialisation and
    fsync, which on a small folder take a good part of an epoch. One batch of writes in flight at a time;
    each write is still atomic, so a kill mid-write leaves the previous file. Callers pass states
    that share no tensor with the live model or optimizer (see ``snapshot``)."""

    def __init__(self):
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def submit(self, jobs: list[tuple[Checkpoint, Path]]) -> None:
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


def read_weights_file(path: PathLike, *, error: type = UserError, hint: str = "") -> Any:
    """A weights file: a :class:`Checkpoint` when it is one of ours (any version this one reads),
    else what the file holds (a state dict, or something :mod:`cnnzoo.weights` refuses)."""
    obj = read_torch_file(path, "weights file", error=error, hint=hint)
    return _record(obj, path) if is_checkpoint(obj) else obj


def load_checkpoint(path: PathLike) -> Checkpoint:
    """Read a cnnzoo checkpoint; a missing, corrupt, foreign or too new file raises :class:`UserError`."""
    values = read_torch_file(path)
    if not is_checkpoint(values):
        raise UserError(f"{str(path)!r} is not a cnnzoo checkpoint (no format={FORMAT!r} key); "
                        "checkpoints are written by `cnnzoo train` as best.pt and last.pt")
    return _record(values, path)


def _record(values: dict[str, Any], path: PathLike) -> Checkpoint:
    try:
        return Checkpoint.from_dict(values, path)
    except (KeyError, TypeError, ValueError) as err:  # a part missing or of the wrong kind
        raise UserError(f"{str(path)!r} is a cnnzoo checkpoint with a damaged or missing part "
                        f"({type(err).__name__}: {err}); write it again with `cnnzoo train`") from None


def require_task(checkpoint: Checkpoint, task: str, path: Any, instead: str) -> None:
    """Refuse, with a message saying what to use instead, a checkpoint of another task (a WaveNet
    checkpoint given to ``cnnzoo evaluate``, an image model to ``cnnzoo generate``)."""
    if checkpoint.task != task:
        raise UserError(f"{str(path)!r} is a checkpoint of a {checkpoint.task} model ({checkpoint.model_name}); "
                        f"this command takes {task} models. {instead}")


def build_model_from_checkpoint(checkpoint: Checkpoint) -> nn.Module:
    """The model a checkpoint describes, with its weights loaded, in eval mode."""
    return checkpoint.build_model()


# --- random number generator states, as plain lists/tensors so weights_only loading accepts them ---

def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
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
