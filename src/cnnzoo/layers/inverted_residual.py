"""MobileNetV2's inverted residual (Sandler et al. 2018, figure 3 and table 1)."""
from __future__ import annotations

from torch import nn

from .conv import ConvNormAct


class InvertedResidual(nn.Module):
    """1x1 ``expand`` by ``expand_ratio``, 3x3 ``depthwise`` (carries the stride), 1x1 linear ``project``.

    Residual only when stride is 1 and the width is kept. The projection has no activation: the
    paper's "linear bottleneck" (a ReLU in a narrow space destroys information). With
    ``expand_ratio == 1`` there is no expansion conv.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float,
                 norm="batch", act="relu6", bias: bool = False):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        if expand_ratio != 1:
            self.expand = ConvNormAct(in_channels, hidden, 1, norm=norm, act=act, bias=bias)
        self.depthwise = ConvNormAct(hidden, hidden, 3, stride, groups=hidden, norm=norm, act=act, bias=bias)
        self.project = ConvNormAct(hidden, out_channels, 1, norm=norm, act="none", bias=bias)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x):
        out = self.expand(x) if hasattr(self, "expand") else x
        out = self.project(self.depthwise(out))
        return x + out if self.use_residual else out
