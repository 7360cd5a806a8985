"""Squeeze-and-excitation (Hu et al. 2018, "Squeeze-and-Excitation Networks", arXiv:1709.01507, figure 1)."""
from __future__ import annotations

import torch
from torch import nn

from .helpers import make_act


class SqueezeExcite(nn.Module):
    """Reweights channels by a gate computed from the whole map: global average ``pool`` (squeeze),
    1x1 ``fc1`` to ``squeeze_channels``, ``act``, 1x1 ``fc2`` back, ``gate`` (excitation), times the input.

    The two "fully connected" layers are 1x1 convolutions with biases, as in torchvision and timm, so
    their weights load as they are. MobileNetV3 uses ``act="relu", gate="hardsigmoid"`` (Howard et
    al. 2019, section 5.3); EfficientNet ``act="silu", gate="sigmoid"``.
    """

    def __init__(self, channels: int, squeeze_channels: int, act="relu", gate="sigmoid"):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = make_act(act)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = make_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))
