"""Sequences: WaveNet on audio (μ-law classes) or on a CSV time series (continuous values).

The data decides the output. ``--data`` a folder of audio files (or one file) trains the 256-way
μ-law categorical at the model's sample rate (``--sample-rate`` to change it); a ``.csv`` file
trains the continuous output (a Gaussian per value) on the chosen ``--columns``, standardised by
the training part's mean and standard deviation, which travel in the checkpoint.

Batches are windows of ``--window`` samples cut from the training part of every signal
(:class:`cnnzoo.data.sequences.SequenceLoader`: order and cuts a function of ``(seed, epoch)``,
which is what makes resuming exact); targets are the inputs one step later.

**The training loss counts every output of a window**, the first ones too, although a window cut
from the middle of a signal gives them zero padding where the signal has a past. Leaving the first
``receptive_field - 1`` outputs out (at most half the window) was tried and measured, both runs
validated alike (every validation sample with its full past): on synthetic voiced audio
(wavenet_small with 6 layers per stack, 15 epochs, two seeds) the validation loss was 0.02 nats
*worse* with the skip (3.281 against 3.260, 3.246 against 3.226): a quarter of each window's
outputs went unused; on sunspots (1700-1986, defaults, two seeds) the validation NLL was better with
the skip (0.90 against 1.05, 0.81 against 0.90) but the 22-year forecast from the best checkpoint
worse (MAE 30.9 and 36.1 against 22.7 and 31.1): with a series shorter than two receptive fields
the skip drops half the targets. The padding is also what generation starts from.

**Validation is the end of every signal** (the last ``--val-fraction`` of each file, or of the
series), never shuffled in. Each validation window is preceded by up to a receptive field of the
training part, as context only (:func:`validation_context`): every validation sample is predicted
once, with the past it has in the signal, and none is a training target.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import nn

from cnnzoo.data.sequences import SequenceLoader, SequenceSet
from cnnzoo.data.series import Series, SeriesSplits, read_series_csv
from cnnzoo.data.splits import DataError
from cnnzoo.devices import autocast
from cnnzoo.errors import UserError
from cnnzoo.registry import get_model_info
from cnnzoo.training.config import TrainConfig
from cnnzoo.training.tasks.base import Task, TrainMetrics, with_imposed

MULAW, CONTINUOUS = "mulaw", "continuous"
SERIES_SUFFIXES = (".csv", ".tsv")

# --- defaults (resolve), each with its reason ---
# A window of about four receptive fields, rounded up to a multiple of 256: three quarters of its
# outputs see a full receptive field of real past (the first ones see zero padding), as outputs do
# when the model generates; longer windows cost memory for little more.
WINDOW_RECEPTIVE_FIELDS = 4
WINDOW_MULTIPLE = 256
# Samples per batch: wavenet_small trains at about 40,000 samples/s on one CPU core (measured,
# batch of 8 x 2,048 at 0.4 s per step), so a step stays under half a second, and its forward
# activations (31 kB per sample, `cnnzoo summary wavenet_small`) stay near half a GB.
BATCH_SAMPLES = 16_384
# A small data set gets fewer windows per batch until an epoch has at least this many steps (as
# images: an epoch of one or two steps learns little before the schedule has decayed).
MIN_STEPS_PER_EPOCH = 8
# Default epochs: about this many samples seen, i.e. one or two minutes of wavenet_small on a CPU
# (the paper's layout costs about five times as much per sample); bounded so tiny data still gets
# enough passes and large data at least a few.
TARGET_SAMPLES = 4_000_000
MIN_EPOCHS, MAX_EPOCHS = 5, 300
# AdamW at Kingma & Ba's 1e-3: WaveNet has no normalisation layer, and SGD at a batch-scaled rate is
# what left a normalisation-free VGG at chance (training/config.py). No weight decay, as the
# reference implementations (ibab/tensorflow-wavenet, r9y9/wavenet_vocoder) train: the model is
# fitted to the density of many overlapping windows.
OPTIMIZER, LR, WEIGHT_DECAY = "adamw", 1e-3, 0.0
# Warm-up over the first 100 steps (at most a tenth of the run): Adam's first steps, with second-moment
# estimates from a handful of gradients, are the large ones. Counted in steps, not as a share of the
# epochs, so that a run whose epochs a time budget cuts keeps a short warm-up.
WARMUP_STEPS, MAX_WARMUP_FRACTION = 100, 0.1
CONDITIONS_NEED_AUDIO = "--condition-on-folders is for audio: a folder with one sub-folder per speaker"


def validation_context(receptive_field: int, window: int) -> int:
    """Samples of the training part put before each signal's validation part, as context only: a
    receptive field's worth, but no more than a training window (a series shorter than its model's
    receptive field keeps some of its training part to validate)."""
    return min(receptive_field - 1, window)


def default_window(receptive_field: int, longest: int) -> int:
    """About four receptive fields (a multiple of 256), but no longer than the longest training signal allows."""
    window = math.ceil(WINDOW_RECEPTIVE_FIELDS * (receptive_field - 1) / WINDOW_MULTIPLE) * WINDOW_MULTIPLE
    return max(1, min(max(window, WINDOW_MULTIPLE), longest - 1))


def count_windows(lengths: list[int], window: int) -> int:
    """Training windows per epoch (one every ``window`` samples, as SequenceLoader cuts them)."""
    return sum((n - window - 1) // window + 1 for n in lengths if n >= window + 1)


def default_batch_size(windows: int, window: int) -> int:
    """About BATCH_SAMPLES samples, halved until an epoch has MIN_STEPS_PER_EPOCH steps, never more than the windows."""
    size = max(1, BATCH_SAMPLES // window)
    while size > 1 and windows / size < MIN_STEPS_PER_EPOCH:
        size //= 2
    return max(1, min(size, windows))


def default_epochs(samples_per_epoch: int) -> int:
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_SAMPLES / max(samples_per_epoch, 1)))))


def wavenet_of(model: nn.Module) -> nn.Module:
    """The WaveNet itself (under torchrun the loop hands tasks DistributedDataParallel's wrapper)."""
    return getattr(model, "module", model)


class WindowMetrics(TrainMetrics):
    """Loss and the readable metric (μ-law: next-sample accuracy; series: MAE in its units), per output counted."""

    def __init__(self, task: "SequenceTask", device: torch.device):
        self.task = task
        self.loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        self.metric_sum = torch.zeros((), device=device, dtype=torch.float64)
        self.windows = 0
        self.outputs = 0

    def update(self, batch, loss: torch.Tensor, outputs: torch.Tensor) -> None:
        y = batch[1]
        self.loss_sum += loss.double() * len(y)  # every window holds the same number of counted outputs
        self.metric_sum += self.task.metric_sum(outputs, y)
        self.windows += len(y)
        self.outputs += len(y) * y.shape[-1]

    def progress(self) -> dict[str, str]:
        metric = self.task.metrics[1]
        return {"loss": f"{self.loss_sum.item() / max(self.windows, 1):.4f}",
                metric: f"{self.metric_sum.item() / max(self.outputs, 1):.4g}"}

    def result(self) -> dict[str, float]:
        return {"train_loss": self.loss_sum.item() / max(self.windows, 1),
                f"train_{self.task.metrics[1]}": self.metric_sum.item() / max(self.outputs, 1)}


class ShardedWindows:
    """A :class:`SequenceLoader` as the loop reads it: ``set_epoch``, ``len`` (steps), ``batch_size``
    and ``num_samples`` (windows this process reads per pass). Under torchrun (``shard=(rank, world)``)
    every process draws the same batches and keeps its contiguous part of each, so order and cuts
    are those of one process reading them all."""

    def __init__(self, loader: SequenceLoader, shard: tuple[int, int] = (0, 1), *, even: bool = False):
        self.loader = loader
        self.rank, self.world_size = shard
        if even and self.world_size > 1 and loader.batch_size % self.world_size:
            raise DataError(f"the batch size {loader.batch_size} does not split evenly across {self.world_size} "
                            f"processes; use a multiple of {self.world_size}")
        self.batch_size = loader.batch_size
        self.window = loader.window

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def num_samples(self) -> int:
        return sum(self._part(len(starts)).stop - self._part(len(starts)).start
                   for starts in self.loader.window_starts(0))

    def _part(self, n: int) -> slice:
        return slice(n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for batch in self.loader:  # (x, y), or (x, y, condition ids)
            if self.world_size > 1:
                part = self._part(len(batch[0]))
                batch = tuple(t[part] for t in batch)
            yield batch


class SequenceTask(Task):
    """WaveNet on audio or a CSV series (see the module docstring). ``kind`` is the model's output:
    ``"mulaw"`` (audio) or ``"continuous"`` (series)."""

    name = "sequence"
    monitor, higher_is_better = "val_loss", False
    unit, bar_unit = "window", "win"

    def __init__(self, kind: str, train: SequenceSet, val: SequenceSet, source: str, *,
                 sample_rate: Optional[int] = None, audio=None, splits: Optional[SeriesSplits] = None,
                 val_fraction: float = 0.2):
        if val.total_samples == 0:
            raise UserError(f"data {source!r} leaves nothing for validation; use a val_fraction above 0")
        self.kind, self.train, self.val, self.source = kind, train, val, source
        self.sample_rate, self.audio, self.splits, self.val_fraction = sample_rate, audio, splits, val_fraction
        # the folders a conditioned WaveNet's ids stand for (--condition-on-folders), else none
        self.condition_names: list[str] = list(getattr(audio, "condition_names", None) or [])
        self.metrics = ("loss", "acc") if kind == MULAW else ("loss", "mae")
        self.metric_limits = {"acc": (0.0, 1.02)} if kind == MULAW else {}
        self.receptive_field: Optional[int] = None  # known once the model is (resolve, loaders)
        self.context = 0                             # validation_context(receptive_field, window)
        self.quantization: Optional[int] = None      # μ-law classes of the model
        self._std: Optional[torch.Tensor] = None     # per column, for the MAE in the series' units

    # --- data ---
    @classmethod
    def load(cls, config: TrainConfig, data=None, progress: bool = True) -> "SequenceTask":
        """The task on ``data`` (a :class:`~cnnzoo.data.series.Series` or an ``AudioSet`` already
        read) if given, else on ``config.data``: a ``.csv`` file is a series, anything else audio."""
        if data is None:
            path = Path(config.data)
            if not path.exists():
                raise DataError(f"no such file or folder: {config.data!r}. {config.model} learns from sequences: "
                                f"--data takes a folder of audio files (or one) or a .csv series")
            is_series = path.is_file() and path.suffix.lower() in SERIES_SUFFIXES
            if is_series and config.condition_on_folders:
                raise UserError(CONDITIONS_NEED_AUDIO)
            data = (read_series_csv(path, _columns(config.columns)) if is_series
                    else _read_audio(path, _sample_rate(config), bool(config.condition_on_folders)))
        if isinstance(data, Series):
            if config.sample_rate is not None:
                raise UserError("--sample-rate is for audio; a CSV series is modelled step by step")
            if config.condition_on_folders:
                raise UserError(CONDITIONS_NEED_AUDIO)
            splits = data.split(config.val_fraction)
            return cls(CONTINUOUS, splits.train, splits.val, data.source, splits=splits,
                       val_fraction=config.val_fraction)
        if config.columns is not None:
            raise UserError(f"--columns chooses columns of a CSV series; {data.source!r} is audio")
        train, val = data.split(config.val_fraction)
        return cls(MULAW, train, val, data.source, sample_rate=data.sample_rate, audio=data,
                   val_fraction=config.val_fraction)

    def summary(self) -> str:
        if self.kind == MULAW:
            rate = self.sample_rate
            return (f"{self.audio.summary()}; training {self.train.total_samples / rate:.1f} s, validation "
                    f"{self.val.total_samples / rate:.1f} s (the last {self.val_fraction:.0%} of every file)")
        series, boundary = self.splits.series, self.splits.boundary
        steps = f", steps {series.step_column!r} {series.steps[0]} to {series.steps[-1]}" if series.steps else ""
        return (f"{series.source}: {len(series)} steps of {', '.join(series.columns)}{steps}; training the first "
                f"{boundary}, validation the last {len(series) - boundary}")

    @property
    def num_train(self) -> int:
        """Training samples (steps), over every signal."""
        return self.train.total_samples

    @property
    def columns(self) -> list[str]:
        return list(self.splits.series.columns) if self.splits is not None else []

    def model_args(self, config: TrainConfig) -> dict:
        """The user's overrides, plus what the data imposes: the output, and the sample rate (audio)
        or the number of columns (series)."""
        args = dict(config.model_args)
        imposed: dict[str, Any] = {"output": self.kind}
        if self.kind == MULAW:
            imposed["sample_rate"] = self.sample_rate
        else:
            imposed["in_channels"] = self.train.channels
        if self.condition_names:
            imposed["num_conditions"] = len(self.condition_names)
        elif args.get("num_conditions"):
            raise UserError("a conditioned WaveNet needs a condition id per file: give --condition-on-folders and "
                            "a folder with one sub-folder per speaker (the number of conditions follows it)")
        return with_imposed(args, imposed, self.source)

    def resolve(self, config: TrainConfig, model: nn.Module, device_type: str) -> TrainConfig:
        """Every option left unset, for this data and model (the reasons are the constants above);
        image-only options get neutral values, so the config says what the run did."""
        self.receptive_field = int(model.receptive_field)
        lengths = [s.shape[1] for s in self.train.signals]
        window = config.window or default_window(self.receptive_field, max(lengths))
        windows = count_windows(lengths, window)
        if windows == 0:
            raise DataError(f"no training signal of {self.source!r} is long enough for one window of {window} "
                            f"samples (the longest has {max(lengths)}); use a shorter --window")
        if config.finetune in ("linear", "gradual") or (config.backbone_lr_scale or 1.0) != 1.0:
            raise UserError("WaveNet has no classifier head to tell from a backbone: --finetune linear or gradual "
                            "and --backbone-lr-scale do not apply (--weights with full fine-tuning does)")
        batch_size = min(config.batch_size or default_batch_size(windows, window), windows)
        steps_per_epoch = windows // batch_size
        epochs = config.epochs or default_epochs(steps_per_epoch * batch_size * window)
        return TrainConfig.from_dict({
            **config.to_dict(),
            "window": window, "batch_size": batch_size, "epochs": epochs,
            "optimizer": config.optimizer or OPTIMIZER,
            "lr": config.lr if config.lr is not None else LR,
            "weight_decay": config.weight_decay if config.weight_decay is not None else WEIGHT_DECAY,
            "schedule": config.schedule or "cosine",
            "warmup_epochs": (config.warmup_epochs if config.warmup_epochs is not None
                              else round(min(WARMUP_STEPS / steps_per_epoch, MAX_WARMUP_FRACTION * epochs), 2)),
            "sample_rate": self.sample_rate,
            "finetune": config.finetune or ("full" if config.weights is not None else None),
            "backbone_lr_scale": 1.0,
            # image-only options, neutral: no label smoothing of a density, no pixels, no NHWC
            "label_smoothing": 0.0, "augment": "none", "channels_last": False, "image_size": None,
        })

    def describe(self, config: TrainConfig) -> str:
        rf, window = self.receptive_field, config.window
        context = validation_context(rf, window)
        if self.kind == MULAW:
            data = f"μ-law audio at {self.sample_rate} Hz"
            span = f"{window} samples ({window / self.sample_rate:.3g} s, {window / rf:.1f} receptive fields)"
        else:
            data = f"series {', '.join(self.columns)} (standardised)"
            span = f"{window} steps ({window / rf:.1f} receptive fields)"
        args = f" {config.model_args}" if config.model_args else ""
        if self.condition_names:
            data += f" conditioned on {len(self.condition_names)} folders"
        return (f"{config.model}{args} on {config.data}: {data}; receptive field {rf}; windows of {span}, "
                f"validated with {context} samples of past; "
                f"{config.epochs} epochs, batch {config.batch_size} windows, {config.optimizer} lr {config.lr:g} "
                f"({config.schedule}, warm-up {config.warmup_epochs:g} ep), weight decay {config.weight_decay:g}, "
                f"seed {config.seed}" + (", amp" if config.amp else ""))

    def loaders(self, config: TrainConfig, device: torch.device, model: nn.Module, shard=(0, 1)):
        wavenet = wavenet_of(model)
        self.receptive_field = int(wavenet.receptive_field)
        self.context = validation_context(self.receptive_field, config.window)
        self.quantization = int(wavenet.config.quantization)
        if self.splits is not None:
            self._std = torch.as_tensor(self.splits.std, dtype=torch.float64, device=device)
        common = dict(target=self.kind, quantization=wavenet.config.quantization, device=device)
        train = SequenceLoader(self.train, config.window, config.batch_size, shuffle=True, seed=config.seed,
                               drop_last=True, **common)
        val_set, hop = self.validation_set(config.window)
        val = SequenceLoader(val_set, self.context + hop, config.batch_size, hop=hop, shuffle=False, **common)
        return ShardedWindows(train, shard, even=True), ShardedWindows(val, shard)

    def validation_set(self, window: int) -> tuple[SequenceSet, int]:
        """(the validation part of every signal behind ``context + 1`` samples of its training part,
        the validation outputs per window): windows ``context + hop`` long, ``hop`` apart, the first
        ``context`` outputs of each not counted, so that each validation sample is a counted target
        exactly once and the context never is."""
        context = self.context
        signals, names, conditions = [], [], []
        ids = self.val.conditions or [None] * len(self.val)
        for train, val, name, condition in zip(self.train.signals, self.val.signals, self.val.names, ids):
            if train.shape[1] > context and val.shape[1] > 0:
                signals.append(np.concatenate([train[:, -(context + 1):], val], axis=1))
                names.append(name)
                conditions.append(condition)
        if not signals:
            raise DataError(f"no signal of {self.source!r} has {context + 1} training samples before its "
                            "validation part; use a shorter --window or longer signals")
        hop = min(window, max(s.shape[1] - context - 1 for s in signals))
        return SequenceSet(signals, names, conditions if self.val.conditions is not None else None), hop

    def batch_size_of(self, batch) -> int:
        return len(batch[1])

    # --- learning ---
    def loss(self, model: nn.Module, batch, config: TrainConfig):
        x, y = batch[:2]
        outputs = model(x, *batch[2:])  # a conditioned set's batches carry the condition ids third
        return wavenet_of(model).loss(outputs.float(), y), outputs

    def metric_sum(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The readable metric summed over the counted outputs: right guesses of the next μ-law
        class, or absolute errors of the predicted mean in the series' units (averaged over columns)."""
        if self.kind == MULAW:
            return (outputs.argmax(1) == y).sum().double()
        mean = outputs[:, :y.shape[1]].double()
        return ((mean - y).abs() * self._std[:, None]).sum() / y.shape[1]

    def train_metrics(self, device: torch.device) -> WindowMetrics:
        return WindowMetrics(self, device)

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, loader, device: torch.device, amp: bool) -> dict[str, float]:
        model.eval()
        wavenet = wavenet_of(model)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        metric_sum = torch.zeros((), device=device, dtype=torch.float64)
        outputs_seen = 0
        for x, y, *condition in loader:
            with autocast(device, amp):
                outputs = model(x, *condition)
            outputs, y = outputs[..., self.context:].float(), y[..., self.context:]
            n = len(y) * y.shape[-1]
            loss_sum += wavenet.loss(outputs, y).double() * n
            metric_sum += self.metric_sum(outputs, y)
            outputs_seen += n
        seen = max(outputs_seen, 1)
        return {"val_loss": loss_sum.item() / seen, f"val_{self.metrics[1]}": metric_sum.item() / seen}

    # --- files ---
    def checkpoint_fields(self, config: TrainConfig) -> dict[str, Any]:
        """Everything ``generate`` and ``forecast`` need besides the model: what the signal is, and
        for a series its columns, step column, standardisation and its last receptive field of values."""
        fields: dict[str, Any] = {"kind": self.kind, "receptive_field": self.receptive_field,
                                  "window": int(config.window), "validation_context": self.context,
                                  "train_samples": self.num_train}
        if self.kind == MULAW:
            fields.update(sample_rate=int(self.sample_rate), quantization=self.quantization,
                          files=list(self.audio.names), conditions=list(self.condition_names))
        else:
            series = self.splits.series
            tail = series.values[:, -self.receptive_field:]  # what a forecast from the series' end reads
            fields.update(columns=self.columns, step_column=series.step_column,
                          mean=[float(v) for v in self.splits.mean], std=[float(v) for v in self.splits.std],
                          length=len(series), boundary=int(self.splits.boundary),
                          last_steps=list(series.steps[-3:]) if series.steps else None,
                          tail=tail.tolist())
        return {"sequence": fields}

    def check_resume(self, saved: dict) -> None:
        fields = saved.get("sequence")
        if not fields:
            raise UserError(f"cannot resume: the run in this folder is not a sequence run (task {saved.get('task')})")
        if fields["kind"] != self.kind:
            raise UserError(f"cannot resume: the run modelled {fields['kind']} data, {self.source!r} is "
                            f"{self.kind}")
        if self.kind == MULAW and fields["sample_rate"] != self.sample_rate:
            raise UserError(f"cannot resume: the run used audio at {fields['sample_rate']} Hz, now "
                            f"{self.sample_rate} Hz (--sample-rate)")
        if self.kind == MULAW and fields.get("conditions", []) != self.condition_names:
            raise UserError(f"cannot resume: the run was conditioned on {fields.get('conditions') or 'nothing'}, "
                            f"now on {self.condition_names or 'nothing'} (--condition-on-folders)")
        if self.kind == CONTINUOUS and fields["columns"] != self.columns:
            raise UserError(f"cannot resume: the run modelled columns {fields['columns']}, now {self.columns}")
        if fields["train_samples"] != self.num_train:
            raise UserError(f"cannot resume: the data changed ({fields['train_samples']} training samples then, "
                            f"{self.num_train} now); an exact resume needs the same data")


def _columns(text: Optional[str]):
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    return names[0] if len(names) == 1 else names


def _sample_rate(config: TrainConfig) -> int:
    """``--sample-rate``, else the model's (its override, or its registered default)."""
    if config.sample_rate is not None:
        return config.sample_rate
    return int(config.model_args.get("sample_rate") or get_model_info(config.model).defaults["sample_rate"])


def _read_audio(path: Path, sample_rate: int, condition_on_folders: bool):
    # soundfile and scipy are the optional "audio" extra, and cost 0.9 s to import (measured): paid
    # only by a run that reads audio.
    from cnnzoo.data.audio import load_audio_folder

    return load_audio_folder(path, sample_rate, condition_on_folders)
