"""What WaveNet's two tasks share: windows cut from signals, validated at the end of every signal.

:class:`~cnnzoo.training.tasks.audio.AudioTask` (μ-law classes) and
:class:`~cnnzoo.training.tasks.series.SeriesTask` (a Gaussian per value of a CSV series) differ in the
data they read, the model's output, the readable metric and what their checkpoint keeps; the rest is
here. Which of the two a run is follows the data, in ``cnnzoo.training.tasks.SequenceTask.load``.

Batches are windows of ``--window`` samples cut from the training part of every signal
(:class:`cnnzoo.data.windows.WindowLoader`: order and cuts a function of ``(seed, epoch)``, which is
what makes resuming exact); targets are the inputs one step later. The training loss counts every
output of a window, the first ones too, whose past is zero padding as it is when the model
generates: leaving them out was measured and did not help (docs/wavenet-notes.md).

**Validation is the end of every signal** (the last ``--val-fraction`` of each file, or of the
series), never shuffled in. Each validation window is preceded by up to a receptive field of the
training part, as context only (:func:`validation_context`): every validation sample is predicted
once, with the past it has in the signal, and none is a training target.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Optional, Union, cast

import numpy as np
import torch
from torch import nn

from cnnzoo.checkpoint import AudioFields, Checkpoint, SeriesFields
from cnnzoo.data.loader import Loader
from cnnzoo.data.splits import DataError
from cnnzoo.data.windows import SignalSet, WindowLoader
from cnnzoo.devices import autocast
from cnnzoo.errors import UserError
from cnnzoo.models.wavenet import WaveNet
from cnnzoo.training.config import TrainConfig
from cnnzoo.training.distributed import unwrap_model
from cnnzoo.training.tasks.base import Task, TrainMetrics, with_imposed

# --- defaults (resolve), each with its reason; the runs behind them: docs/wavenet-notes.md ---
# A window of about four receptive fields, rounded up to a multiple of 256: three quarters of its
# outputs see a full receptive field of real past (the first ones see zero padding), as outputs do
# when the model generates; longer windows cost memory for little more.
WINDOW_RECEPTIVE_FIELDS = 4
WINDOW_MULTIPLE = 256
# Samples per batch: a step of wavenet_small stays short on one CPU core, and its forward activations
# (31 kB per sample, `cnnzoo summary wavenet_small`) stay near half a GB.
BATCH_SAMPLES = 16_384
# A small data set gets fewer windows per batch until an epoch has at least this many steps (as
# images: an epoch of one or two steps learns little before the schedule has decayed).
MIN_STEPS_PER_EPOCH = 8
# Default epochs: about this many samples seen, a short run of wavenet_small on a CPU (the paper's
# layout costs about five times as many multiply-adds per sample); bounded so tiny data still gets
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
# The WaveNet output each windowed task trains, by the record its checkpoints keep.
OUTPUTS: dict[type, str] = {AudioFields: "mulaw", SeriesFields: "continuous"}


def as_wavenet(model: nn.Module) -> WaveNet:
    """The WaveNet the loop hands over, unwrapped (:func:`unwrap_model`) and typed as one."""
    return cast(WaveNet, unwrap_model(model))


def resolved(value: Optional[int], option: str) -> int:
    """An option :meth:`WindowedTask.resolve` fills in; unset, the config was not resolved."""
    if value is None:
        raise ValueError(f"{option} is unset: pass the config resolve() returns")
    return value


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
    """Training windows per epoch (one every ``window`` samples, as WindowLoader cuts them)."""
    return sum((n - window - 1) // window + 1 for n in lengths if n >= window + 1)


def default_batch_size(windows: int, window: int) -> int:
    """About BATCH_SAMPLES samples, halved until an epoch has MIN_STEPS_PER_EPOCH steps, never more than the windows."""
    size = max(1, BATCH_SAMPLES // window)
    while size > 1 and windows / size < MIN_STEPS_PER_EPOCH:
        size //= 2
    return max(1, min(size, windows))


def default_epochs(samples_per_epoch: int) -> int:
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_SAMPLES / max(samples_per_epoch, 1)))))


@dataclass(frozen=True)
class Windowing:
    """What a windowed task knows of the model it trains and of its window, read from them once."""

    receptive_field: int  # samples one output sees
    quantization: int     # μ-law classes of the model's input (what an audio loader encodes into)
    window: int           # samples per training window

    @classmethod
    def of(cls, model: nn.Module, window: int) -> Windowing:
        network = as_wavenet(model)
        return cls(network.receptive_field, network.config.quantization, int(window))

    @property
    def context(self) -> int:
        """Samples of past before each validation window's counted outputs (:func:`validation_context`)."""
        return validation_context(self.receptive_field, self.window)


class WindowMetrics(TrainMetrics):
    """Loss and the readable metric (audio: next-sample accuracy; series: MAE in its units), per output counted."""

    def __init__(self, task: WindowedTask, device: torch.device):
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
        return {"loss": self.loss_sum.item() / max(self.windows, 1),
                self.task.metrics[1]: self.metric_sum.item() / max(self.outputs, 1)}


class ShardedWindows:
    """A :class:`WindowLoader` as the loop reads it: ``set_epoch``, ``len`` (steps), ``batch_size``
    and ``num_samples`` (windows this process reads per pass). Under torchrun (``shard=(rank, world)``)
    every process draws the same batches and keeps its contiguous part of each, so order and cuts
    are those of one process reading them all."""

    def __init__(self, loader: WindowLoader, shard: tuple[int, int] = (0, 1), *, even: bool = False):
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


class WindowedTask(Task):
    """WaveNet trained on windows of signals (see the module docstring). Subclasses say what the data
    is: ``fields_type`` (the record their checkpoints keep, which decides the model's output),
    ``metrics``, :meth:`load`, :meth:`summary`, :meth:`imposed_args`, :meth:`describe_data`,
    :meth:`metric_sum`, :meth:`checkpoint_fields` and :meth:`check_fields`.

    The facts of the model it trains (:class:`Windowing`) are bound by :meth:`bind`, from the model
    and window the loop hands over (``resolve``, ``loaders``); one task trains one model."""

    name = "sequence"
    monitor, higher_is_better = "val_loss", False
    unit, bar_unit = "window", "win"
    fields_type: ClassVar[type[Union[AudioFields, SeriesFields]]]
    sample_rate: Optional[int] = None  # Hz, for audio

    def __init__(self, train: SignalSet, val: SignalSet, source: str, val_fraction: float,
                 condition_names: Optional[list[str]] = None):
        if val.total_samples == 0:
            raise UserError(f"data {source!r} leaves nothing for validation; use a val_fraction above 0")
        self.train, self.val, self.source, self.val_fraction = train, val, source, val_fraction
        # the folders a conditioned WaveNet's ids stand for (--condition-on-folders), else none
        self.condition_names: list[str] = list(condition_names or [])
        self.windowing: Optional[Windowing] = None

    @property
    def output(self) -> str:
        """The WaveNet output this data needs: "mulaw" (audio) or "continuous" (a series)."""
        return OUTPUTS[self.fields_type]

    def bind(self, model: nn.Module, window: int) -> Windowing:
        """The facts of ``model`` and ``window``, kept for the task's life: a later model must agree."""
        windowing = Windowing.of(model, window)
        if self.windowing is not None and windowing != self.windowing:
            raise ValueError(f"this task trains the model of {self.windowing}, not of {windowing}")
        self.windowing = windowing
        return windowing

    @property
    def bound(self) -> Windowing:
        if self.windowing is None:
            raise RuntimeError("the task has no model yet: resolve() or loaders() binds it")
        return self.windowing

    @property
    def receptive_field(self) -> int:
        return self.bound.receptive_field

    @property
    def context(self) -> int:
        return self.bound.context

    # --- data ---
    @property
    def num_train(self) -> int:
        """Training samples (steps), over every signal."""
        return self.train.total_samples

    def imposed_args(self) -> dict[str, Any]:
        """The model arguments this data decides besides the output (a sample rate, a number of columns)."""
        raise NotImplementedError

    def model_args(self, config: TrainConfig) -> dict:
        """The user's overrides, plus what the data imposes: the output, and the sample rate (audio)
        or the number of columns (series)."""
        args = dict(config.model_args)
        imposed: dict[str, Any] = {"output": self.output, **self.imposed_args()}
        if self.condition_names:
            imposed["num_conditions"] = len(self.condition_names)
        elif args.get("num_conditions"):
            raise UserError("a conditioned WaveNet needs a condition id per file: give --condition-on-folders and "
                            "a folder with one sub-folder per speaker (the number of conditions follows it)")
        return with_imposed(args, imposed, self.source)

    def resolve(self, config: TrainConfig, model: nn.Module, device_type: str) -> TrainConfig:
        """Every option left unset, for this data and model (the reasons are the constants above);
        image-only options get neutral values, so the config says what the run did."""
        receptive_field = as_wavenet(model).receptive_field
        lengths = [s.shape[1] for s in self.train.signals]
        window = config.window or default_window(receptive_field, max(lengths))
        windows = count_windows(lengths, window)
        if windows == 0:
            raise DataError(f"no training signal of {self.source!r} is long enough for one window of {window} "
                            f"samples (the longest has {max(lengths)}); use a shorter --window")
        if config.finetune in ("linear", "gradual") or (config.backbone_lr_scale or 1.0) != 1.0:
            raise UserError("WaveNet has no classifier head to tell from a backbone: --finetune linear or gradual "
                            "and --backbone-lr-scale do not apply (--weights with full fine-tuning does)")
        self.bind(model, window)
        batch_size = min(config.batch_size or default_batch_size(windows, window), windows)
        steps_per_epoch = windows // batch_size
        epochs = config.epochs or default_epochs(steps_per_epoch * batch_size * window)
        return dataclasses.replace(
            config,
            window=window, batch_size=batch_size, epochs=epochs,
            optimizer=config.optimizer or OPTIMIZER,
            lr=config.lr if config.lr is not None else LR,
            weight_decay=config.weight_decay if config.weight_decay is not None else WEIGHT_DECAY,
            schedule=config.schedule or "cosine",
            warmup_epochs=(config.warmup_epochs if config.warmup_epochs is not None
                           else round(min(WARMUP_STEPS / steps_per_epoch, MAX_WARMUP_FRACTION * epochs), 2)),
            sample_rate=self.sample_rate,
            finetune=config.finetune or ("full" if config.weights is not None else None),
            backbone_lr_scale=1.0,
            # image-only options, neutral: no label smoothing of a density, no pixels, no NHWC
            label_smoothing=0.0, augment="none", channels_last=False, image_size=None,
        )

    def describe_data(self, window: int) -> tuple[str, str]:
        """(what the data is, how long a window of ``window`` samples is), for :meth:`describe`."""
        raise NotImplementedError

    def describe(self, config: TrainConfig) -> str:
        rf, window, context = self.receptive_field, self.bound.window, self.context
        data, span = self.describe_data(window)
        args = f" {config.model_args}" if config.model_args else ""
        if self.condition_names:
            data += f" conditioned on {len(self.condition_names)} folders"
        return (f"{config.model}{args} on {config.data}: {data}; receptive field {rf}; windows of {span}, "
                f"validated with {context} samples of past; "
                f"{config.epochs} epochs, batch {config.batch_size} windows, {config.optimizer} lr {config.lr:g} "
                f"({config.schedule}, warm-up {config.warmup_epochs:g} ep), weight decay {config.weight_decay:g}, "
                f"seed {config.seed}" + (", amp" if config.amp else ""))

    def loaders(self, config: TrainConfig, device: torch.device, model: nn.Module,
                shard: tuple[int, int] = (0, 1)) -> tuple[Loader, Loader]:
        window, batch_size = resolved(config.window, "window"), resolved(config.batch_size, "batch_size")
        windowing = self.bind(model, window)
        train = WindowLoader(self.train, window, batch_size, target=self.output, quantization=windowing.quantization,
                             shuffle=True, seed=config.seed, drop_last=True, device=device)
        val_set, hop = self.validation_set(window)
        val = WindowLoader(val_set, windowing.context + hop, batch_size, target=self.output,
                           quantization=windowing.quantization, hop=hop, shuffle=False, device=device)
        return ShardedWindows(train, shard, even=True), ShardedWindows(val, shard)

    def validation_set(self, window: int) -> tuple[SignalSet, int]:
        """(the validation part of every signal behind ``context + 1`` samples of its training part,
        the validation outputs per window): windows ``context + hop`` long, ``hop`` apart, the first
        ``context`` outputs of each not counted, so that each validation sample is a counted target
        exactly once and the context never is."""
        context = self.context
        kept = [i for i, (train, val) in enumerate(zip(self.train.signals, self.val.signals))
                if train.shape[1] > context and val.shape[1] > 0]
        if not kept:
            raise DataError(f"no signal of {self.source!r} has {context + 1} training samples before its "
                            "validation part; use a shorter --window or longer signals")
        signals = [np.concatenate([self.train.signals[i][:, -(context + 1):], self.val.signals[i]], axis=1)
                   for i in kept]
        ids = self.val.conditions
        conditions = None if ids is None else [ids[i] for i in kept]
        hop = min(window, max(s.shape[1] - context - 1 for s in signals))
        return SignalSet(signals, [self.val.names[i] for i in kept], conditions), hop

    def batch_size_of(self, batch) -> int:
        return len(batch[1])

    # --- learning ---
    def prepare(self, x: torch.Tensor, y: torch.Tensor, known: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch's windows as the network takes them, ``known`` their first inputs a forecast would
        have seen (a series' per-window level is taken from them); as they are by default."""
        return x, y

    def loss(self, model: nn.Module, batch, config: TrainConfig):
        x, y = self.prepare(batch[0], batch[1], self.receptive_field)
        outputs = model(x, *batch[2:])  # a conditioned set's batches carry the condition ids third
        return as_wavenet(model).loss(outputs.float(), y), outputs

    def metric_sum(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The readable metric (``metrics[1]``) summed over the counted outputs."""
        raise NotImplementedError

    def train_metrics(self, device: torch.device) -> WindowMetrics:
        return WindowMetrics(self, device)

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, loader, device: torch.device, amp: bool) -> dict[str, float]:
        model.eval()
        network = as_wavenet(model)
        context = self.context
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        metric_sum = torch.zeros((), device=device, dtype=torch.float64)
        outputs_seen = 0
        for x, y, *condition in loader:
            x, y = self.prepare(x, y, max(context, 1))
            with autocast(device, amp):
                outputs = model(x, *condition)
            outputs, y = outputs[..., context:].float(), y[..., context:]
            n = len(y) * y.shape[-1]
            loss_sum += network.loss(outputs, y).double() * n
            metric_sum += self.metric_sum(outputs, y)
            outputs_seen += n
        seen = max(outputs_seen, 1)
        return {"loss": loss_sum.item() / seen, self.metrics[1]: metric_sum.item() / seen}

    # --- files ---
    def checkpoint_fields(self, config: TrainConfig) -> Union[AudioFields, SeriesFields]:
        """Everything ``generate`` or ``forecast`` needs besides the model."""
        raise NotImplementedError

    def check_fields(self, fields: Any) -> None:
        """Raise UserError when the saved fields (this task's ``fields_type``) no longer fit the data."""

    def check_resume(self, saved: Checkpoint) -> None:
        fields = saved.fields
        if saved.task != self.name or fields is None:
            raise UserError(f"cannot resume: the run in this folder is not a sequence run (task {saved.task})")
        if not isinstance(fields, self.fields_type):
            raise UserError(f"cannot resume: the run modelled {OUTPUTS[type(fields)]} data, {self.source!r} is "
                            f"{self.output}")
        self.check_fields(fields)
        if fields.train_samples != self.num_train:
            raise UserError(f"cannot resume: the data changed ({fields.train_samples} training samples then, "
                            f"{self.num_train} now); an exact resume needs the same data")
