"""Stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth", arXiv:1603.09382)."""
from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """While training, zeroes a residual branch for a random ``drop_prob`` of the samples and scales
    the others by ``1 / (1 - drop_prob)``, so the expected output is unchanged and evaluation needs
    no rescaling (torchvision's ``StochasticDepth(p, "row")``, timm's ``DropPath``). The identity in
    evaluation and at ``drop_prob == 0``. No parameters.
    """

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
