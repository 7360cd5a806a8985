"""Depthwise-separable convolution (MobileNet v1): a per-channel 3x3, then a 1x1 that mixes channels."""
from __future__ import annotations

from torch import nn

from .conv import ConvNormAct


class DepthwiseSeparableConv(nn.Sequential):
    """``depthwise`` (3x3, one filter per input channel, carries the stride) then ``pointwise`` (1x1).

    Costs roughly ``1/out_channels + 1/9`` of a full 3x3 convolution's multiply-adds
    (Howard et al. 2017, section 3.1).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3,
                 norm="batch", act="relu", bias: bool = False):
        super().__init__()
        self.depthwise = ConvNormAct(in_channels, in_channels, kernel_size, stride, groups=in_channels,
                                     norm=norm, act=act, bias=bias)
        self.pointwise = ConvNormAct(in_channels, out_channels, 1, norm=norm, act=act, bias=bias)
        self.in_channels, self.out_channels = in_channels, out_channels
