"""The conv -> norm -> activation block every family here is built from."""
from __future__ import annotations

from typing import Optional

from torch import nn

from .factories import get_act_layer, get_norm_layer


class ConvNormAct(nn.Sequential):
    """``Conv2d`` then an optional norm and an optional activation, with 'same' padding by default.

    Children are named ``conv``, ``norm`` and ``act``; a norm or activation of ``'none'`` is left out
    rather than replaced by an Identity, so the state dict holds only what computes something.
    ``bias=None`` means: a bias only when there is no norm (a norm's shift makes it redundant).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: Optional[int] = None, groups: int = 1, dilation: int = 1,
                 norm="batch", act="relu", bias: Optional[bool] = None):
        norm_layer, act_layer = get_norm_layer(norm), get_act_layer(act)
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                              dilation=dilation, groups=groups, bias=bias)
        if norm_layer is not None:
            self.norm = norm_layer(out_channels)
        if act_layer is not None:
            self.act = act_layer()
        self.in_channels, self.out_channels = in_channels, out_channels
