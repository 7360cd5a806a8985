"""The inverted residual of MobileNetV2 (Sandler et al. 2018, figure 3 and table 1) and its later
form, the MBConv of MobileNetV3 and EfficientNet: any kernel size, an optional squeeze-excitation
on the expanded features and stochastic depth on the residual branch."""
from __future__ import annotations

from typing import Optional

from torch import nn

from .conv import ConvNormAct
from .drop_path import DropPath
from .squeeze_excite import SqueezeExcite


class InvertedResidual(nn.Module):
    """1x1 ``expand`` by ``expand_ratio``, ``kernel_size`` ``depthwise`` (carries the stride), optional
    ``se`` (squeeze-excitation), 1x1 linear ``project``.

    Residual only when stride is 1 and the width is kept. The projection has no activation: the
    paper's "linear bottleneck" (a ReLU in a narrow space destroys information). With no expansion
    (``expand_ratio == 1``, or ``hidden_channels == in_channels``) there is no expansion conv.

    The later options, each off by default (MobileNetV2's block):
    ``hidden_channels`` sets the expanded width directly (MobileNetV3's table gives it, not a ratio);
    ``se_channels > 0`` adds squeeze-excitation with that bottleneck, ``se_act`` inside and ``se_gate``
    at its end; ``drop_path`` is the stochastic-depth probability of the residual branch (EfficientNet);
    ``padding`` goes to the convolutions (``"tf"``: TensorFlow's "same", for weights trained with it).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float,
                 norm="batch", act="relu6", bias: bool = False, *, kernel_size: int = 3,
                 hidden_channels: Optional[int] = None, se_channels: int = 0, se_act="relu",
                 se_gate="sigmoid", drop_path: float = 0.0, padding=None):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio)) if hidden_channels is None else hidden_channels
        self.use_residual = stride == 1 and in_channels == out_channels
        conv = dict(norm=norm, bias=bias, **({} if padding is None else {"padding": padding}))
        if hidden != in_channels:
            self.expand = ConvNormAct(in_channels, hidden, 1, act=act, **conv)
        self.depthwise = ConvNormAct(hidden, hidden, kernel_size, stride, groups=hidden, act=act, **conv)
        if se_channels:
            self.se = SqueezeExcite(hidden, se_channels, act=se_act, gate=se_gate)
        self.project = ConvNormAct(hidden, out_channels, 1, act="none", **conv)
        if drop_path and self.use_residual:
            self.drop_path = DropPath(drop_path)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x):
        out = self.expand(x) if hasattr(self, "expand") else x
        out = self.depthwise(out)
        if hasattr(self, "se"):
            out = self.se(out)
        out = self.project(out)
        if not self.use_residual:
            return out
        return x + (self.drop_path(out) if hasattr(self, "drop_path") else out)
