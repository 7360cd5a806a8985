"""What the training loop asks of a task: the seam between "how to train" and "what is learned".

The loop (``cnnzoo.training.trainer``) owns epochs, steps, the learning-rate schedule, checkpoints,
exact resume, history, curves, early stopping, the time budget, NaN handling and Ctrl-C. A task owns
everything that depends on the problem: how the data becomes batches, the loss, the metrics, which
metric decides ``best.pt``, the defaults that suit it, and what a checkpoint must carry so the
model can be used later (class names, preprocessing...).

To add a task: subclass :class:`Task`, implement the methods marked "required", and register the
class under a registry task name in ``cnnzoo.training.tasks.TASKS`` (models declare their task when
they register: ``register_model(..., task="sequence")``).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from cnnzoo.checkpoint import Checkpoint, TaskFields, throughput_key
from cnnzoo.data.loader import Loader
from cnnzoo.errors import UserError
from cnnzoo.training.config import TrainConfig, describe


def with_imposed(args: dict, imposed: dict[str, Any], source: str) -> dict:
    """``args`` (the user's model overrides) with what the data decides: a key left unset takes the
    data's value, one given otherwise is refused (the model would not fit the data)."""
    args = dict(args)
    for key, needed in imposed.items():
        if args.get(key) is None:
            args[key] = needed
        elif args[key] != needed:
            raise UserError(f"{key}={args[key]!r} was given but the data {source!r} needs {needed!r}; "
                            f"leave {key} unset and it follows the data")
    return args


class TrainMetrics:
    """Running sums over one training epoch, kept on the device (no GPU sync per step)."""

    def update(self, batch: Any, loss: torch.Tensor, outputs: torch.Tensor) -> None:  # required
        raise NotImplementedError

    def progress(self) -> dict[str, str]:
        """Short strings for the progress bar (called every few steps: may sync the device)."""
        return {}

    def result(self) -> dict[str, float]:
        """Required: the epoch's mean of each of the task's ``metrics`` by name: ``{"loss": ..., "acc": ...}``."""
        raise NotImplementedError


class Task:
    """One kind of problem the loop can train. Instances hold the loaded data."""

    name: str = ""
    # The validation metric that decides best.pt and early stopping, and its direction.
    monitor: str = "val_loss"
    higher_is_better: bool = False
    # Metric names recorded per epoch as train_<name> and val_<name>, and plotted; the first is the loss.
    metrics: tuple[str, ...] = ("loss",)
    # Axis limits for each metric's curve (None: automatic).
    metric_limits: dict[str, tuple[float, float]] = {}
    unit: str = "sample"       # what one item of a batch is: history's train_<unit>s_per_s
    bar_unit: str = "sample"   # how the progress bar counts them
    # A time budget may choose mixed precision by timing (see training.budget.precision_is_measured):
    # only where bfloat16 was measured to train as well as float32.
    precision_by_timing: bool = False

    # --- data (required) ---
    source: str = ""

    @classmethod
    def load(cls, config: TrainConfig, data: Any = None, progress: bool = True) -> "Task":
        """Required: the task on ``data`` when given (already loaded: many runs on one split), else on
        ``config.data``; ``progress`` shows preparing the data."""
        raise NotImplementedError

    def summary(self) -> str:
        """One line on the data, printed at the start of a run."""
        return self.source

    @property
    def num_train(self) -> int:
        raise NotImplementedError

    @property
    def class_names(self) -> list[str]:
        """What each output index means, for classifiers (empty for other tasks)."""
        return []

    def model_args(self, config: TrainConfig) -> dict:
        """The user's model overrides plus what the data imposes (classes, channels...)."""
        return dict(config.model_args)

    def describe(self, config: TrainConfig) -> str:
        """The resolved settings on one line, printed once at the start of a run."""
        return describe(config)

    def resolve(self, config: TrainConfig, model: nn.Module, device_type: str) -> TrainConfig:
        """Fill every option left at None with this task's default for this data and model."""
        raise NotImplementedError

    def loaders(self, config: TrainConfig, device: torch.device, model: nn.Module,
                shard: tuple[int, int] = (0, 1)) -> tuple[Loader, Loader]:
        """(train, val) loaders (``model``, built and on ``device``, for tasks that precompute with it).
        ``shard=(rank, world_size)`` under torchrun: each process's part of every training batch
        (``batch_size`` stays the global batch) and a disjoint part of the validation data.
        The train loader's order and augmentation are a function of ``(config.seed, e)`` only after
        ``set_epoch(e)``: that is what makes resuming exact. ``num_samples`` (what this process reads
        per pass) is what metrics are averaged across processes by."""
        raise NotImplementedError

    def batch_size_of(self, batch: Any) -> int:
        """How many samples a batch holds (for throughput and the progress bar)."""
        return len(batch[-1])

    def mix(self, batch: Any, config: TrainConfig, gen: torch.Generator) -> Any:
        """The training batch after mixup/CutMix (``config.mixup``, ``config.cutmix``), drawing from
        ``gen`` (one generator per epoch: resuming stays exact). Tasks without mixing return it as is."""
        return batch

    # --- learning (required) ---
    def loss(self, model: nn.Module, batch: Any, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss of one batch and the outputs the metrics need (runs under autocast)."""
        raise NotImplementedError

    def train_metrics(self, device: torch.device) -> TrainMetrics:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader: Loader, device: torch.device, amp: bool) -> dict[str, float]:
        """Validation: each of the task's ``metrics`` by name, ``{"loss": ..., "acc": ...}``."""
        raise NotImplementedError

    def test_metrics(self, model: nn.Module, config: TrainConfig,
                     device: torch.device) -> Optional[tuple[dict[str, float], int]]:
        """The model's metrics on the data's test split by name, and how many samples were scored;
        None when the data has none."""
        return None

    # --- files ---
    def checkpoint_fields(self, config: TrainConfig) -> Optional[TaskFields]:
        """What a checkpoint carries besides the model and the run, so the model can be used alone
        (a record of :mod:`cnnzoo.checkpoint`: class names and preprocessing for images...)."""
        return None

    def check_resume(self, saved: Checkpoint) -> None:
        """Raise UserError when the data no longer fits the run being resumed."""

    # --- derived ---
    def is_better(self, score: float, best: Optional[float]) -> bool:
        if best is None:
            return True
        return score > best if self.higher_is_better else score < best

    @property
    def history_columns(self) -> tuple[str, ...]:
        return ("epoch", *(f"train_{m}" for m in self.metrics), *(f"val_{m}" for m in self.metrics),
                "lr", "epoch_time", self.throughput_key, "elapsed")

    @property
    def throughput_key(self) -> str:
        return throughput_key(self.unit)
