"""ShuffleNetV2's channel shuffle and its building unit (Ma et al. 2018, "ShuffleNet V2: Practical
Guidelines for Efficient CNN Architecture Design", arXiv:1807.11164, figure 3 (c) and (d))."""
from __future__ import annotations

import torch
from torch import nn

from .conv import ConvNormAct


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups (Zhang et al. 2017, ShuffleNet, figure 1):
    ``[a0 a1 b0 b1] -> [a0 b0 a1 b1]`` for two groups, so the next split mixes both branches."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """One ShuffleNetV2 unit.

    Stride 1 (figure 3c): split the channels in half; one half passes untouched, the other goes
    through ``branch2`` (1x1, 3x3 depthwise, 1x1); concatenate and shuffle. Stride 2 (figure 3d): no
    split; ``branch1`` (3x3 depthwise stride 2, 1x1) and ``branch2`` (with a strided depthwise) both
    see the whole input, and the width doubles. Depthwise convolutions have no activation.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm="batch", act="relu",
                 bias: bool = False):
        super().__init__()
        if out_channels % 2 or (stride == 1 and in_channels != out_channels):
            raise ValueError(f"a ShuffleNetV2 unit needs an even width, kept at stride 1: {in_channels} -> "
                             f"{out_channels} at stride {stride}")
        branch = out_channels // 2
        self.stride = stride
        conv = dict(norm=norm, bias=bias)
        if stride > 1:
            self.branch1 = nn.Sequential(
                ConvNormAct(in_channels, in_channels, 3, stride, groups=in_channels, act="none", **conv),
                ConvNormAct(in_channels, branch, 1, act=act, **conv))
        branch2_in = in_channels if stride > 1 else branch
        self.branch2 = nn.Sequential(
            ConvNormAct(branch2_in, branch, 1, act=act, **conv),
            ConvNormAct(branch, branch, 3, stride, groups=branch, act="none", **conv),
            ConvNormAct(branch, branch, 1, act=act, **conv))
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            kept, x = x.chunk(2, dim=1)
            out = torch.cat((kept, self.branch2(x)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return channel_shuffle(out, 2)
