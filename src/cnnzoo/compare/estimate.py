"""The plan, before anything trains: how long each model will take, from a few measured steps.

For each model, the trainer's own measurement (``cnnzoo.training.estimate_epoch_seconds``: a few
training steps of a throwaway copy built as the run will build it, random state put back, plus
validation as a forward pass) and its own rule for what a time budget holds. Latency measurement and
per-class evaluation are not included.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from cnnzoo import training
from cnnzoo.text import MISSING, table
from cnnzoo.training import TrainConfig
from cnnzoo.training.budget import FILL_AT_MOST_EPOCHS, budget_plan


@dataclass(frozen=True)
class Estimate:
    """One model's line of the plan (all its seeds)."""

    name: str
    image_size: Optional[int] = None
    batch_size: Optional[int] = None
    epochs: Optional[int] = None       # planned per run (fitted to the time budget when there is one)
    epoch_s: Optional[float] = None    # estimated seconds per epoch
    repeats: int = 1
    note: str = ""                     # "reused", "budget 2.5 min per run", why it could not be measured

    @property
    def total_s(self) -> Optional[float]:
        if self.note == "reused":
            return 0.0
        if self.epochs is None or self.epoch_s is None:
            return None
        return self.epochs * self.epoch_s * self.repeats


def estimate_model(name: str, config: TrainConfig, task, repeats: int = 1, *, fill: bool = False) -> Estimate:
    """Measure model ``name``'s run of ``config`` (resolved: :func:`cnnzoo.training.resolved_config`) on
    the data of ``task``; a failure to measure (out of memory...) is noted, not raised: training will say more.
    ``fill``: no epoch count was given, so a time budget fills the time as the trainer will fill it."""
    try:
        epoch_s = training.estimate_epoch_seconds(config, task)  # as the run will measure itself
    except Exception as err:  # noqa: BLE001 - an estimate must never stop the comparison
        return Estimate(name, config.image_size, repeats=repeats, note=f"not measured ({type(err).__name__})")
    note = f"budget {config.time_budget_s / 60:.3g} min per run" if config.time_budget_s else ""
    plan = budget_plan(config, epoch_s, fill=fill) if config.time_budget_s else None
    if plan is not None and plan.capped:
        note += f", capped at {FILL_AT_MOST_EPOCHS} epochs (it holds {plan.holds:,})"
    elif config.time_budget_s and epoch_s > config.time_budget_s:  # the run still does one whole epoch
        note += f"; one epoch overruns it {epoch_s / config.time_budget_s:.1f}x"
    return Estimate(name, config.image_size, config.batch_size,
                    training.epochs_within_budget(config, epoch_s, fill=fill),  # the epochs by the trainer's own rule
                    epoch_s, repeats, note)


def plan_table(estimates: list[Estimate], budget_s: Optional[float] = None) -> str:
    """The plan as a text table with the total (printed before training, kept in the report)."""
    rows: list[tuple[object, ...]] = []  # the cells: numbers, text, and MISSING where not measured
    for e in estimates:
        total = e.total_s
        rows.append((e.name, e.image_size, e.batch_size or MISSING, e.epochs or MISSING,
                     f"{e.epoch_s:.2f}" if e.epoch_s is not None else MISSING, e.repeats,
                     format_duration(total), e.note))
    known = [e.total_s for e in estimates if e.total_s is not None]
    rows.append(("total", "", "", "", "", "", format_duration(sum(known)) if known else MISSING,
                 f"budget {format_duration(budget_s)}" if budget_s else ""))
    return table(rows, ("model", "px", "batch", "epochs", "s/epoch", "seeds", "estimated", "note"), "lrrrrrrl")


def format_duration(seconds: Optional[float]) -> str:
    """'0.4 s', '45 s', '3.2 min', '1.5 h'."""
    if seconds is None or not math.isfinite(seconds):
        return MISSING
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
