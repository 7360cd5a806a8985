"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates", §3.3; fastai's ``lr_find``).

Train for ``num_steps`` batches while the learning rate grows exponentially from ``start_lr`` to
``end_lr``, record the loss at each rate, stop once the loss has clearly diverged, then put the
model's weights and buffers, the optimiser's state and torch's random state back as they were.

How the suggestion is chosen, and why not as fastai and Lightning do:

- Lightning (and pytorch-lr-finder) take the steepest point of ``np.gradient`` of the loss, i.e.
  the difference between neighbouring steps: one noisy pair of batches decides, and an early spike
  wins (Lightning-AI/pytorch-lightning#1767, #21141; davidtvs/pytorch-lr-finder#106); their gradient
  also ignored the exponential spacing of the rates (Lightning #14248). Even without noise, the
  steepest descent marks where training *starts* to make progress within the sweep, which on an
  easy problem is one to two decades below a good rate (tests/test_lr_find.py shows it).
- fastai's ``minimum / 10``: where the loss has a flat floor, the minimum of a noisy floor can
  fall anywhere along it (two decades apart between seeds), and its trailing exponential smoothing
  (beta 0.98) shifts the whole curve about 50 steps towards higher rates.

Here the loss is smoothed by a *centred* Gaussian window (no shift). The *edge* is the highest
rate before the smoothed loss rises above its minimum by more than its noise (three times the
robust spread of the raw loss about the curve, up to the minimum, and at least 2 % of the drop):
the end of the floor, wherever the minimum happened to fall on it, and a sustained rise, not a
spike. The suggestion is the edge / 10 (fastai's factor, for fastai's reason: the edge is where
training turns unstable; a schedule's peak belongs a decade below). When the loss never falls by
more than its noise, or never turns up before ``end_lr``, there is no suggestion and the result
says why rather than inventing a rate.
"""
from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import numpy as np
import torch
from torch import nn

from cnnzoo.devices import num_threads, pick_device
from cnnzoo.errors import UserError
from cnnzoo.factory import create_model_with_args
from cnnzoo.files import atomic_write_text, save_figure
from cnnzoo.training.config import TrainConfig, make_config, resolved
from cnnzoo.training.finetune import freeze_backbone
from cnnzoo.training.optim import build_optimizer
from cnnzoo.training.tasks import task_for_model

EDGE_FACTOR = 10.0  # the suggestion is the edge of the floor / this (fastai uses the minimum / 10)
DIVERGENCE_FACTOR = 4.0  # stop when the running loss exceeds this multiple of its best (fastai's rule)


@dataclass(frozen=True)
class LrFindResult:
    """``lrs`` and ``losses`` per step (raw), ``smoothed`` the centred-window loss, ``suggestion`` the
    suggested peak learning rate (None when the curve shows no clear descent), ``why`` the reason in
    words, ``stopped`` why the sweep ended (``"end_lr"``, ``"diverged"``, ``"data"``)."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestion: Optional[float]
    why: str
    stopped: str

    def to_dict(self) -> dict:
        return {"lrs": list(self.lrs), "losses": list(self.losses), "smoothed": list(self.smoothed),
                "suggestion": self.suggestion, "why": self.why, "stopped": self.stopped}

    @classmethod
    def from_dict(cls, d: dict) -> "LrFindResult":
        return cls(tuple(d["lrs"]), tuple(d["losses"]), tuple(d["smoothed"]), d["suggestion"], d["why"],
                   d["stopped"])

    def __repr__(self) -> str:
        span = f"{self.lrs[0]:.2g}..{self.lrs[-1]:.2g}" if self.lrs else "no steps"
        return f"LrFindResult({len(self.lrs)} steps, {span}, stopped {self.stopped}: {self})"

    def __str__(self) -> str:
        rate = f"{self.suggestion:.2g}" if self.suggestion is not None else "none"
        return f"suggested learning rate: {rate} ({self.why})"

    def plot(self, path: Optional[str | Path] = None):
        """Loss against learning rate (log axis), raw and smoothed, the suggestion marked. Saved as a PNG
        at ``path`` when given; the matplotlib figure is returned otherwise."""
        import matplotlib.pyplot as plt  # measured: 0.46 s to import; paid only by whoever draws

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.lrs, self.losses, color="0.75", lw=1, label="loss per batch")
        ax.plot(self.lrs, self.smoothed, color="C0", lw=2, label="smoothed (centred)")
        if self.suggestion is not None:
            ax.axvline(self.suggestion, color="C3", ls="--", label=f"suggestion {self.suggestion:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        finite = [v for v in self.smoothed if math.isfinite(v)]
        if finite:  # the divergent tail would squash the interesting part
            ax.set_ylim(min(finite) - 0.05 * abs(min(finite)), max(finite[0], min(finite)) * 1.3 + 1e-12)
        ax.set_title(str(self), fontsize=8)
        ax.legend(fontsize=8)
        fig.tight_layout()
        if path is None:
            return fig
        return save_figure(fig, path)


def lr_find(model: nn.Module, loader: Iterable, loss_fn: Callable, optimizer: torch.optim.Optimizer, *,
            start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100) -> LrFindResult:
    """Sweep the learning rate exponentially over ``num_steps`` batches of ``loader`` (cycled).

    ``loss_fn(model, batch)`` returns the loss, or a tuple whose first item is it (as
    ``Task.loss`` does). ``optimizer`` is built over ``model``'s parameters (the one training will
    use: momentum and Adam's moments shape the curve); each group's rate is set to the sweep's rate
    times its ``"lr_scale"`` (1 if absent). Everything is restored afterwards.
    """
    if not 0 < start_lr < end_lr:
        raise UserError(f"lr-find needs 0 < start_lr < end_lr, got {start_lr:g} and {end_lr:g}")
    if num_steps < 10:
        raise UserError(f"lr-find needs at least 10 steps for a curve, got {num_steps}")
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_rng = torch.get_rng_state()
    was_training = model.training
    try:
        lrs, losses, stopped = _sweep(model, loader, loss_fn, optimizer, start_lr, end_lr, num_steps)
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        torch.set_rng_state(saved_rng)
        model.train(was_training)
    smoothed = centred_smooth(np.log10(lrs), np.asarray(losses))
    suggestion, why = suggest(np.asarray(lrs), np.asarray(losses), smoothed)
    return LrFindResult(tuple(lrs), tuple(losses), tuple(float(v) for v in smoothed), suggestion, why, stopped)


def find_lr(config: Optional[TrainConfig] = None, *, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_steps: int = 100, out_dir: Union[str, os.PathLike, None] = None, progress: bool = True,
            **fields_: Any) -> LrFindResult:
    """The range test for a training run of ``config`` (or ``model=..., data=...`` fields): the task,
    data, model, loader and optimizer built as ``train`` builds them (the optimizer the run would use:
    its momentum or moments shape the curve). With ``out_dir``, writes ``lr_find.png`` and
    ``lr_find.json`` there."""
    config = make_config(config, **fields_)
    with num_threads(config.threads):
        device = pick_device(config.device)
        task = task_for_model(config.model).load(config, None, progress)
        torch.manual_seed(config.seed)
        model, _ = create_model_with_args(config.model, weights=config.weights, progress=progress,
                                          **task.model_args(config))
        config = task.resolve(config, model, device.type)
        if config.finetune == "linear":
            freeze_backbone(model)
        model.to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        train_loader, _ = task.loaders(config, device, model)
        optimizer = build_optimizer(model, resolved(config.optimizer), resolved(config.lr),
                                    resolved(config.weight_decay), backbone_lr_scale=config.backbone_lr_scale or 1.0)
        result = lr_find(model, train_loader, lambda m, batch: task.loss(m, batch, config), optimizer,
                         start_lr=start_lr, end_lr=end_lr, num_steps=num_steps)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        result.plot(out / "lr_find.png")
        payload = {"model": config.model, "data": task.source, "optimizer": config.optimizer,
                   "batch_size": config.batch_size, **result.to_dict()}
        atomic_write_text(out / "lr_find.json", json.dumps(payload, indent=2) + "\n")
    return result


def _sweep(model, loader, loss_fn, optimizer, start_lr, end_lr, num_steps) -> tuple[list, list, str]:
    model.train()
    factor = (end_lr / start_lr) ** (1 / (num_steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    running, best, beta = 0.0, math.inf, 0.98
    batches = iter(loader)
    for step in range(num_steps):
        lr = start_lr * factor ** step
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches, None)
            if batch is None:
                return lrs, losses, "data"
        out = loss_fn(model, batch)
        loss = out[0] if isinstance(out, tuple) else out
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        lrs.append(lr)
        losses.append(value)
        # The stop rule needs an online estimate: a trailing, debiased average as fastai's.
        running = beta * running + (1 - beta) * value
        debiased = running / (1 - beta ** (step + 1))
        if not math.isfinite(value) or (step > 5 and debiased > DIVERGENCE_FACTOR * best):
            return lrs, losses, "diverged"
        best = min(best, debiased)
    return lrs, losses, "end_lr"


def centred_smooth(log_lr: np.ndarray, losses: np.ndarray, width_decades: float = 0.15) -> np.ndarray:
    """Gaussian-weighted average of the finite losses around each point (sigma ``width_decades`` in
    log10 of the rate): centred, so the curve is not shifted towards higher rates. A non-finite loss
    stays non-finite."""
    finite = np.isfinite(losses)
    out = np.full(len(losses), np.nan)
    if not finite.any():
        return out
    d = (log_lr[:, None] - log_lr[None, finite]) / width_decades
    weights = np.exp(-0.5 * d ** 2)
    out[finite] = (weights @ losses[finite])[finite] / weights.sum(1)[finite]
    return out


def suggest(lrs: np.ndarray, losses: np.ndarray, smoothed: np.ndarray) -> tuple[Optional[float], str]:
    """The edge of the floor / 10, and why (see the module's text)."""
    finite = np.isfinite(smoothed)
    if finite.sum() < 5:
        return None, "too few finite losses for a curve"
    lrs, losses, smoothed = lrs[finite], losses[finite], smoothed[finite]
    low = int(np.argmin(smoothed))
    # The spread about the curve up to its minimum (the divergent tail is not noise), robustly: MAD.
    residuals = (losses - smoothed)[:low + 1]
    noise = 1.4826 * float(np.median(np.abs(residuals - np.median(residuals))))
    drop = float(smoothed[0] - smoothed[low])
    if low < 2 or drop <= 3 * noise:
        return None, (f"the loss never fell by more than its noise (fell {drop:.3g}, noise {noise:.3g}); "
                      f"start lower or train longer per rate")
    rise = max(3 * noise, 0.02 * drop)
    above = np.nonzero(smoothed[low:] > smoothed[low] + rise)[0]
    if len(above) == 0:
        return None, f"the loss had not turned up by {lrs[-1]:.2g}; sweep to a higher end_lr"
    edge = float(lrs[low + above[0] - 1])
    return edge / EDGE_FACTOR, (f"a tenth of where the loss turns up ({edge:.2g}); its minimum was at "
                                f"{lrs[low]:.2g}")
