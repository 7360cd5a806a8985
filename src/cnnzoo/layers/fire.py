"""SqueezeNet's Fire module (Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer
parameters and <0.5MB model size", arXiv:1602.07360, figure 1)."""
from __future__ import annotations

import torch
from torch import nn

from .conv import ConvNormAct


class Fire(nn.Module):
    """A 1x1 ``squeeze`` to few channels, then two ``expand`` branches side by side, 1x1 and 3x3,
    concatenated: ``expand1x1 + expand3x3`` output channels.

    The paper's network has no normalisation and biases in every convolution (``norm="none"``, the
    default); ``norm="batch"`` adds a batch norm after each convolution.
    """

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int, norm="none",
                 act="relu", bias=None):
        super().__init__()
        conv = dict(norm=norm, act=act, bias=bias)
        self.squeeze = ConvNormAct(in_channels, squeeze, 1, **conv)
        self.expand1x1 = ConvNormAct(squeeze, expand1x1, 1, **conv)
        self.expand3x3 = ConvNormAct(squeeze, expand3x3, 3, **conv)
        self.in_channels, self.out_channels = in_channels, expand1x1 + expand3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)
