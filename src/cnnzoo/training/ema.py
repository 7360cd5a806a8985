"""An exponential moving average of a model's weights (Polyak averaging, as timm's ``ModelEmaV3``).

After each optimiser step, ``ema = decay_t * ema + (1 - decay_t) * weights``. With ``warmup`` the
decay starts low and rises, ``decay_t = min(decay, (1 + t) / (10 + t))`` after ``t`` updates
(TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` rule): without it, an average with decay
0.999 would still be mostly the random initialisation a thousand steps in, which on short CPU runs
is the whole run.

Batch-norm statistics are **averaged** with the same decay, not copied (timm's default): the
running mean and variance were measured under the raw weights of recent steps, and the averaged
weights are a blend of those same recent weights, so the blend of the statistics is the closer
estimate. Copying pairs the newest raw statistics with older averaged weights, a mismatch that is
largest exactly when the average differs most from the raw weights. Integer buffers
(``num_batches_tracked``) are copied.

The trainer validates :attr:`ModelEma.module` each epoch beside the raw weights and keeps whichever
scores better in ``best.pt``; :meth:`state_dict` / :meth:`load_state_dict` carry the average and the
update count through ``last.pt``, so resuming is exact.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from cnnzoo.errors import UserError


class ModelEma:
    """The average of ``model``'s weights: call :meth:`update` after every optimiser step.

    ``model`` is the plain model (not a DistributedDataParallel or compiled wrapper: pass the module
    it wraps). The copy lives on the model's device, in eval mode, and takes no gradients.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, *, warmup: bool = True):
        if not 0.0 < decay < 1.0:
            raise UserError(f"the EMA decay must be between 0 and 1 (exclusive), got {decay}; 0.999 is usual")
        self.decay = float(decay)
        self.warmup = warmup
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def decay_at(self, updates: int) -> float:
        """The decay the ``updates``-th update (counting from 0) uses."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.decay_at(self.updates)
        averaged: list[tuple[torch.Tensor, torch.Tensor]] = []
        copied: list[tuple[torch.Tensor, torch.Tensor]] = []
        for ema_t, t in zip(self.module.state_dict().values(), model.state_dict().values()):
            (averaged if ema_t.is_floating_point() else copied).append((ema_t, t.detach()))
        if averaged:
            targets, sources = zip(*averaged)
            torch._foreach_lerp_(list(targets), list(sources), 1.0 - d)
        for ema_t, t in copied:
            ema_t.copy_(t)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "updates": self.updates,
                "model": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.warmup, self.updates = float(state["decay"]), bool(state["warmup"]), int(state["updates"])
        self.module.load_state_dict(state["model"])

    def __repr__(self) -> str:
        return f"ModelEma(decay={self.decay}, warmup={self.warmup}, updates={self.updates})"
