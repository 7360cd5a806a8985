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
import statistics
import time
from typing import Optional

import torch
from torch import nn

from cnnzoo import checkpoint as ckpt
from cnnzoo.checkpoint import EpochRecord
from cnnzoo.devices import autocast, num_threads, pick_device, synchronize
from cnnzoo.factory import create_model
from cnnzoo.training.config import TrainConfig, resolved
from cnnzoo.training.optim import build_optimizer
from cnnzoo.training.tasks import Task

PROBE_STEPS = 3  # training steps timed before a budgeted run fixes its schedule (the first is a warm-up)
# A budget filled without --epochs runs at most this many times the default epoch count. An epoch that
# costs next to nothing (a linear probe on cached features, a few small images) would otherwise plan
# thousands of epochs: the measurement leaves out each epoch's fixed cost (its checkpoint, the
# loaders' start), so the run would stop long before its schedule decays, and passes over the same
# images beyond a few hundred fit the noise rather than help.
FILL_AT_MOST_TIMES = 5


def measure_epoch_seconds(task: Task, model: nn.Module, train_loader, val_loader, config: TrainConfig,
                           device: torch.device) -> float:
    """Seconds one epoch will take, from a few training steps of a throwaway copy of the model and
    optimizer: the run's own weights, optimizer and random state are left exactly as they were."""
    rng = ckpt.get_rng_state()
    probe = copy.deepcopy(model).train()
    optimizer = build_optimizer(probe, resolved(config.optimizer), resolved(config.lr), resolved(config.weight_decay))
    times = []
    for step, batch in enumerate(train_loader):
        start = time.perf_counter()
        with autocast(device, config.amp):
            loss, _ = task.loss(probe, batch, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        times.append(time.perf_counter() - start)
        if step + 1 >= PROBE_STEPS:
            break
    ckpt.set_rng_state(rng)
    del probe, optimizer
    per_step = min(times[1:] or times)  # the first step pays for allocation and kernel selection
    # Validation is a forward pass (about a third of a training step per sample) over the val loader.
    val_steps = len(val_loader) * val_loader.batch_size / max(train_loader.batch_size, 1)
    return per_step * (len(train_loader) + val_steps / 3)


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
        return measure_epoch_seconds(task, model, train_loader, val_loader, config, device)


def epochs_within_budget(config: TrainConfig, epoch_s: float, *, fill: bool = False) -> int:
    """The epochs a run does under its time budget: those asked for, at most as many as fit (``fill``:
    no --epochs given, so the budget fills the time as :func:`budget_plan` says)."""
    if not config.time_budget_s:
        return resolved(config.epochs)
    return budget_plan(config, epoch_s, fill=fill).epochs


def epochs_filling_budget(config: TrainConfig, epoch_s: float) -> int:
    """The epochs a budget holds when no epoch count was asked for: the budget fills the time, up to
    :data:`FILL_AT_MOST_TIMES` the default count (see :func:`budget_plan` for why)."""
    return budget_plan(config, epoch_s, fill=True).epochs


@dataclasses.dataclass(frozen=True)
class BudgetPlan:
    """The epochs a time budget gives a run, and how they were decided."""

    epochs: int
    holds: int     # the epochs the budget holds at the measured speed
    asked: int     # the epochs asked for (with ``fill``: the default count)
    capped: bool   # ``fill`` would have gone past FILL_AT_MOST_TIMES x asked
    most: int      # the most epochs a later re-plan may give: ``asked``, or with ``fill`` FILL_AT_MOST_TIMES x it

    def sentence(self, budget_s: float, epoch_s: float) -> str:
        """The log line: what was measured, the epochs planned, and why."""
        plural = "s" if self.epochs != 1 else ""
        start = f"time budget {budget_s / 60:g} min: about {epoch_s:.2g} s per epoch (measured), so "
        if self.capped:
            return (start + f"{self.epochs} epoch{plural} ({FILL_AT_MOST_TIMES}x the default {self.asked}; the "
                    f"budget would hold {self.holds:,}, but passes beyond that fit noise and the measurement "
                    "leaves out each epoch's fixed cost); the learning-rate schedule is fitted to them")
        instead = f" instead of {self.asked}" if self.epochs < self.asked else ""
        return start + f"{self.epochs} epoch{plural}{instead}; the learning-rate schedule is fitted to them"


def budget_plan(config: TrainConfig, epoch_s: float, *, fill: bool = False) -> BudgetPlan:
    """The epochs of a run with a time budget: those asked for, at most as many as fit; with ``fill``
    (no --epochs given) as many as fit, more than the default count if they do, but at most
    :data:`FILL_AT_MOST_TIMES` times it."""
    asked = resolved(config.epochs)
    holds = max(1, int(resolved(config.time_budget_s) // max(epoch_s, 1e-9)))
    if not fill:
        return BudgetPlan(min(asked, holds), holds, asked, capped=False, most=asked)
    most = FILL_AT_MOST_TIMES * asked
    return BudgetPlan(min(holds, most), holds, asked, capped=holds > most, most=most)


def fit_epochs_to_budget(config: TrainConfig, epoch_s: float, log, *, fill: bool = False) -> TrainConfig:
    """The run's epochs cut to what the budget holds (``fill``: no --epochs given, so as many as it
    holds, more than the default count if they fit, up to FILL_AT_MOST_TIMES that count), so that
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
