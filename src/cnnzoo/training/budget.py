"""Time budgets: how long an epoch will take, measured before the schedule is fixed, and how many
epochs a budget holds.

A run with ``time_budget_s`` times a few steps of a throwaway copy of its model (its own weights,
optimizer and random state untouched), fits its epochs - and so its warm-up and decay - to what the
budget holds, and still stops at an epoch boundary if the estimate was optimistic. When the epochs
turn out slower than measured (a busy machine, the fixed cost of each epoch's validation and
checkpoint) or faster, the run plans again after each epoch (:func:`epochs_that_fit`) so that its
schedule decays by the end of the budget and the budget is used. ``cnnzoo compare`` plans with the
same measurement and rule.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import statistics
import time
from typing import Callable, Optional

import torch
from torch import nn

from cnnzoo import checkpoint as ckpt
from cnnzoo.checkpoint import EpochRecord
from cnnzoo.data.augment import progressive_size
from cnnzoo.devices import autocast, native_bfloat16, num_threads, pick_device, synchronize
from cnnzoo.factory import create_model
from cnnzoo.training.config import TrainConfig, resolved
from cnnzoo.training.optim import build_optimizer
from cnnzoo.training.tasks import Task

PROBE_STEPS = 3  # training steps timed before a budgeted run fixes its schedule (the first is a warm-up)
# A budget filled without --epochs plans at most this many epochs: the longest schedules of the
# published recipes (CIFAR's 200-300 epochs; torchvision's and timm's ImageNet recipes for the
# lightweight families 300-600). An epoch that costs next to nothing (a linear probe on cached
# features, a few small images) would otherwise plan thousands, and passes over the same images
# beyond a few hundred fit the noise rather than help. (It was 5x the default epoch count, which
# for a mid-sized set stopped a budget early: cifar10-10k's 15 minutes ended after about two, at 40
# epochs, where the budget holds about 275.)
FILL_AT_MOST_EPOCHS = 300


# bfloat16 must win clearly to be chosen: closer than this the few timed steps cannot tell the two
# apart, and float32 is what every other figure of the zoo was measured in. Measured on an AMD EPYC
# with AVX512-BF16 (2 cores, a training step): ResNet-18 x0.5 at 128 px 1.7x, VGG11-BN x0.5 1.5x,
# MobileNetV2 x0.5 1.1x, MobileNet x0.5 at 32 px 0.4x (its depthwise convolutions have no fast
# bfloat16 kernel there): which way it goes depends on the model and size, so it is timed.
AMP_MIN_SPEEDUP = 1.15


@dataclasses.dataclass(frozen=True)
class EpochCost:
    """Seconds an epoch takes, as a function of the side its training images have (progressive
    resizing trains early epochs smaller): a training step's time is taken as linear in the pixels
    between two timed sides; validation runs at the final side every epoch."""

    steps: int            # training steps per epoch
    val_s: float          # validation, a forward pass at the final side (about a third of a training step)
    small_side: int
    small_step_s: float
    final_side: int
    final_step_s: float

    @classmethod
    def uniform(cls, epoch_s: float) -> "EpochCost":
        """Every epoch ``epoch_s`` seconds, whatever its side."""
        return cls(steps=1, val_s=0.0, small_side=0, small_step_s=epoch_s, final_side=0, final_step_s=epoch_s)

    def step_seconds(self, side: int) -> float:
        if self.final_side == self.small_side:
            return self.final_step_s
        share = (side ** 2 - self.small_side ** 2) / (self.final_side ** 2 - self.small_side ** 2)
        return self.small_step_s + share * (self.final_step_s - self.small_step_s)

    def epoch_seconds(self, side: int) -> float:
        return self.step_seconds(side) * self.steps + self.val_s

    @property
    def first_epoch_s(self) -> float:
        """The first epoch: what a budget's plan starts from (see :func:`measure_epoch_seconds`)."""
        return self.epoch_seconds(self.small_side)


def train_sides(config: TrainConfig, epochs: int) -> list[Optional[int]]:
    """Each epoch's training image side under progressive resizing (None for every epoch without it:
    one size throughout)."""
    if not config.progressive_resize or not config.image_size:
        return [None] * epochs
    return [progressive_size(epoch, epochs, config.image_size) for epoch in range(epochs)]


def mean_epoch_seconds(cost: EpochCost, config: TrainConfig, epochs: int) -> float:
    """The mean epoch of a run of ``epochs`` (progressive resizing's small epochs are cheaper)."""
    sides = train_sides(config, max(epochs, 1))
    return statistics.fmean(cost.epoch_seconds(side or cost.final_side) for side in sides)


def _time_steps(task: Task, model: nn.Module, train_loader, config: TrainConfig, device: torch.device,
                *, epoch: int, amp: bool) -> float:
    """Seconds per training step of a throwaway copy of ``model`` and its optimizer on the batches of
    ``epoch`` (the loader's order and augmentation are a function of the epoch: nothing is drawn
    from the run's own random state)."""
    probe = copy.deepcopy(model).train()
    optimizer = build_optimizer(probe, resolved(config.optimizer), resolved(config.lr), resolved(config.weight_decay))
    train_loader.set_epoch(epoch)
    batches = list(itertools.islice(iter(train_loader), PROBE_STEPS))
    train_loader.set_epoch(0)
    times = []
    for batch in batches:
        start = time.perf_counter()
        with autocast(device, amp):
            loss, _ = task.loss(probe, batch, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times[1:] or times)  # the first step pays for allocation and kernel selection


def measure_epoch_cost(task: Task, model: nn.Module, train_loader, val_loader, config: TrainConfig,
                       device: torch.device, *, amp: Optional[bool] = None, both_sides: bool = False) -> EpochCost:
    """An epoch's cost from a few training steps of a throwaway copy of the model and optimizer, at
    the first epoch's side and (``both_sides``, with progressive resizing) at the final side too;
    with the first alone, every epoch is taken to cost what the first does. The run's own weights,
    optimizer and random state are left exactly as they were."""
    amp = bool(config.amp) if amp is None else amp
    epochs = resolved(config.epochs)
    sides = train_sides(config, epochs)
    small, final = sides[0] or 0, sides[-1] or 0
    rng = ckpt.get_rng_state()
    try:
        small_s = final_s = _time_steps(task, model, train_loader, config, device, epoch=0, amp=amp)
        if both_sides and small != final:
            final_s = _time_steps(task, model, train_loader, config, device, epoch=epochs - 1, amp=amp)
        else:
            final = small
    finally:
        ckpt.set_rng_state(rng)
    # Validation is a forward pass (about a third of a training step per sample) over the val loader.
    val_steps = len(val_loader) * val_loader.batch_size / max(train_loader.batch_size, 1)
    return EpochCost(steps=len(train_loader), val_s=final_s * val_steps / 3, small_side=small, small_step_s=small_s,
                     final_side=final, final_step_s=final_s)


def measure_epoch_seconds(task: Task, model: nn.Module, train_loader, val_loader, config: TrainConfig,
                          device: torch.device) -> float:
    """Seconds of the run's first epoch, what a budget's plan starts from.

    With progressive resizing the first epoch is the smallest, so the first plan holds more epochs
    than will fit, and the re-plans after each epoch (:func:`epochs_that_fit`) shrink it as the
    images grow: the run spends more of its epochs at small sides than its nominal schedule says.
    That measured better than planning from each epoch's side (:meth:`EpochCost.epoch_seconds`):
    flowers-train, ResNet-18 x0.5 at 128 px, 5 minutes on two cores, float32: 52-55 epochs and
    80.2-81.8 % best validation accuracy (three runs), against 40 epochs and 78.9 % (one run)."""
    return measure_epoch_cost(task, model, train_loader, val_loader, config, device).first_epoch_s


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """Mixed precision or not, decided by timing both: the mean epoch in each, and the chosen one's cost."""

    amp: bool
    float32_epoch_s: float
    bfloat16_epoch_s: float
    cost: EpochCost

    @property
    def speedup(self) -> float:
        return self.float32_epoch_s / max(self.bfloat16_epoch_s, 1e-12)

    def sentence(self) -> str:
        if self.amp:
            return (f"mixed precision: on - bfloat16 trains {self.speedup:.2f}x as fast as float32 on this CPU "
                    f"(a few steps timed each way), so the budget holds more epochs; --no-amp turns it off")
        return (f"mixed precision: off - bfloat16 would train {self.speedup:.2f}x as fast as float32 on this CPU "
                f"(a few steps timed each way; it is chosen from {AMP_MIN_SPEEDUP:g}x); --amp turns it on")


def precision_is_measured(config: TrainConfig, task: Task, device: torch.device) -> bool:
    """Whether the run times both precisions to choose one: mixed precision left to its default, a
    time budget (the runs where speed buys accuracy, and whose plan is timed anyway), a task that
    trains as well in bfloat16 (``Task.precision_by_timing``) and a CPU with hardware bfloat16."""
    return (config.amp is None and bool(config.time_budget_s) and task.precision_by_timing
            and device.type == "cpu" and native_bfloat16())


def choose_precision(measure: Callable[[bool], EpochCost], config: TrainConfig) -> PrecisionChoice:
    """Time an epoch in float32 and in bfloat16 (``measure(amp)``: see :func:`measure_epoch_cost`);
    bfloat16 when it is at least :data:`AMP_MIN_SPEEDUP` times as fast over the run's mean epoch."""
    epochs = resolved(config.epochs)
    # Each timed at the first and the final side; float32 twice, before and after bfloat16, keeping
    # the faster: the first timing of a side also pays for creating its kernels (a ResNet-18 step
    # once timed 606 ms there against 237 ms the next time), which would favour bfloat16.
    before, bfloat16, after = measure(False), measure(True), measure(False)
    float32 = min(before, after, key=lambda cost: mean_epoch_seconds(cost, config, epochs))
    fp32, bf16 = mean_epoch_seconds(float32, config, epochs), mean_epoch_seconds(bfloat16, config, epochs)
    amp = fp32 / bf16 >= AMP_MIN_SPEEDUP
    return PrecisionChoice(amp, fp32, bf16, bfloat16 if amp else float32)


def estimate_epoch_seconds(config: TrainConfig, task: Task) -> float:
    """Seconds per epoch of a run of ``config`` (resolved: see :func:`resolved_config`) on the
    task's data, measured as a run measures itself before fitting a time budget: a few steps of a
    throwaway model (what ``cnnzoo compare`` plans with)."""
    device = pick_device(config.device)
    model = create_model(config.model, **config.model_args).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader, val_loader = task.loaders(config, device, model)
    with num_threads(config.threads):
        if precision_is_measured(config, task, device):  # the run will choose its precision, and plan in it
            choice = choose_precision(lambda amp: measure_epoch_cost(task, model, train_loader, val_loader, config,
                                                                     device, amp=amp, both_sides=True), config)
            return choice.cost.first_epoch_s
        return measure_epoch_seconds(task, model, train_loader, val_loader, config, device)


def epochs_within_budget(config: TrainConfig, epoch_s: float, *, fill: bool = False) -> int:
    """The epochs a run does under its time budget: those asked for, at most as many as fit (``fill``:
    no --epochs given, so the budget fills the time as :func:`budget_plan` says)."""
    if not config.time_budget_s:
        return resolved(config.epochs)
    return budget_plan(config, epoch_s, fill=fill).epochs


def epochs_filling_budget(config: TrainConfig, epoch_s: float) -> int:
    """The epochs a budget holds when no epoch count was asked for: the budget fills the time, up to
    :data:`FILL_AT_MOST_EPOCHS` (see :func:`budget_plan` for why)."""
    return budget_plan(config, epoch_s, fill=True).epochs


@dataclasses.dataclass(frozen=True)
class BudgetPlan:
    """The epochs a time budget gives a run, and how they were decided."""

    epochs: int
    holds: int     # the epochs the budget holds at the measured speed
    asked: int     # the epochs asked for (with ``fill``: the default count)
    capped: bool   # ``fill`` would have gone past FILL_AT_MOST_EPOCHS
    most: int      # the most epochs a later re-plan may give: ``asked``, or with ``fill`` FILL_AT_MOST_EPOCHS

    def sentence(self, budget_s: float, epoch_s: float) -> str:
        """The log line: what was measured, the epochs planned, and why."""
        plural = "s" if self.epochs != 1 else ""
        start = f"time budget {budget_s / 60:g} min: about {epoch_s:.2g} s per epoch (measured), so "
        if self.capped:
            return (start + f"{self.epochs} epoch{plural} (the most a budget fills; it would hold {self.holds:,}, "
                    "but passes beyond a few hundred fit noise rather than help); the learning-rate schedule "
                    "is fitted to them")
        instead = f" instead of {self.asked}" if self.epochs < self.asked else ""
        return start + f"{self.epochs} epoch{plural}{instead}; the learning-rate schedule is fitted to them"


def budget_plan(config: TrainConfig, epoch_s: float, *, fill: bool = False) -> BudgetPlan:
    """The epochs of a run with a time budget: those asked for, at most as many as fit; with ``fill``
    (no --epochs given) as many as fit, more than the default count if they do, but at most
    :data:`FILL_AT_MOST_EPOCHS`."""
    asked = resolved(config.epochs)
    holds = max(1, int(resolved(config.time_budget_s) // max(epoch_s, 1e-9)))
    if not fill:
        return BudgetPlan(min(asked, holds), holds, asked, capped=False, most=asked)
    most = max(asked, FILL_AT_MOST_EPOCHS)
    return BudgetPlan(min(holds, most), holds, asked, capped=holds > most, most=most)


def fit_epochs_to_budget(config: TrainConfig, epoch_s: float, log, *, fill: bool = False) -> TrainConfig:
    """The run's epochs cut to what the budget holds (``fill``: no --epochs given, so as many as it
    holds, more than the default count if they fit, up to FILL_AT_MOST_EPOCHS), so that
    the schedule (its warm-up and decay) is planned for the epochs that will run and the run ends
    with a decayed learning rate; the fitted value is stored in the config, so a resumed run keeps
    the plan."""
    plan = budget_plan(config, epoch_s, fill=fill)
    log(plan.sentence(resolved(config.time_budget_s), epoch_s))
    epochs = plan.epochs
    return dataclasses.replace(config, epochs=epochs, warmup_epochs=min(resolved(config.warmup_epochs), epochs / 2))


def epochs_that_fit(config: TrainConfig, run_start: float, this_call: list[EpochRecord], done: int,
                    most: int) -> Optional[int]:
    """With a time budget, the epochs in all (``done`` so far, at most ``most``: the epochs asked for,
    or when the budget fills the time, the most it may plan) that the rest of the budget holds at the
    pace of this call's epochs, when that differs from the plan; otherwise None. The pace is the
    median epoch after the first (which also pays one-time costs), so that one slow epoch does not
    cut the plan for good. Both ways: the few steps timed before training can misjudge an epoch
    either way (a busy moment makes them slow, and a 5-minute flower run that planned 26 epochs from
    them ended after 221 s), so the plan grows as well as shrinks."""
    if not config.time_budget_s or len(this_call) < 2:
        return None
    remaining = config.time_budget_s - (time.perf_counter() - run_start)
    pace = statistics.median(r.epoch_time for r in this_call[1:])
    fit = min(most, done + max(0, int(remaining // max(pace, 1e-9))))
    return fit if fit != resolved(config.epochs) else None


def out_of_time(config: TrainConfig, run_start: float, this_call: list[EpochRecord]) -> bool:
    """Stop before an epoch that would end past the budget (estimated from the epochs so far)."""
    if not config.time_budget_s or not this_call:
        return False
    elapsed = time.perf_counter() - run_start
    mean_epoch = sum(r.epoch_time for r in this_call) / len(this_call)
    return elapsed + mean_epoch > config.time_budget_s
