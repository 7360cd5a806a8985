"""DenseNet's building blocks (Huang et al. 2016, section 3): every layer sees all earlier features."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .conv import Conv2d
from .factories import get_norm_layer
from .helpers import make_act


def _norm_act(norm, act, channels: int) -> list[tuple[str, nn.Module]]:
    norm_layer = get_norm_layer(norm)
    return ([("norm", norm_layer(channels))] if norm_layer else []) + [("act", make_act(act))]


class DenseLayer(nn.Module):
    """BN-ReLU-Conv(1x1) to ``bn_size * growth_rate`` channels, then BN-ReLU-Conv(3x3) to ``growth_rate``
    (the "DenseNet-B" bottleneck). Pre-activation order, as in the paper. Returns only the new channels.
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int = 4, norm="batch", act="relu",
                 bias: bool = False):
        super().__init__()
        width = bn_size * growth_rate
        norm_layer = get_norm_layer(norm)
        if norm_layer:
            self.norm1 = norm_layer(in_channels)
        self.act1 = make_act(act)
        self.conv1 = Conv2d(in_channels, width, 1, bias=bias)
        if norm_layer:
            self.norm2 = norm_layer(width)
        self.act2 = make_act(act)
        self.conv2 = Conv2d(width, growth_rate, 3, padding=1, bias=bias)

    def forward(self, x):
        x = self.conv1(self.act1(self.norm1(x) if hasattr(self, "norm1") else x))
        return self.conv2(self.act2(self.norm2(x) if hasattr(self, "norm2") else x))


class DenseBlock(nn.Module):
    """``num_layers`` dense layers; layer i receives the concatenation of the input and layers 0..i-1."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int = 4,
                 norm="batch", act="relu", bias: bool = False):
        super().__init__()
        self.layers = nn.ModuleDict({
            f"layer{i + 1}": DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, norm, act, bias)
            for i in range(num_layers)})
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x):
        features = [x]
        for layer in self.layers.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """Between dense blocks: BN-ReLU, a 1x1 conv (halving the channels in DenseNet-BC), 2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int, norm="batch", act="relu", bias: bool = False):
        super().__init__(OrderedDict(_norm_act(norm, act, in_channels) + [
            ("conv", Conv2d(in_channels, out_channels, 1, bias=bias)),
            ("pool", nn.AvgPool2d(2, stride=2)),
        ]))
        self.out_channels = out_channels
