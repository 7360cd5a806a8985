"""Depthwise-separable convolution (MobileNet v1): a per-channel 3x3, then a 1x1 that mixes channels."""
from __future__ import annotations

from typing import Union

from torch import nn

from .conv import ConvNormAct


class DepthwiseSeparableConv(nn.Sequential):
    """``depthwise`` (3x3, one filter per input channel, carries the stride) then ``pointwise`` (1x1).

    Costs roughly ``1/out_channels + 1/9`` of a full 3x3 convolution's multiply-adds
    (Howard et al. 2017, section 3.1). ``padding`` is the depthwise conv's, as :class:`ConvNormAct`
    takes it (None: symmetric; Keras' MobileNet pads its stride-2 ones on the bottom and right only).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3,
                 norm="batch", act="relu", bias: bool = False,
                 padding: Union[int, str, tuple[int, int, int, int], None] = None):
        super().__init__()
        self.depthwise = ConvNormAct(in_channels, in_channels, kernel_size, stride, padding=padding,
                                     groups=in_channels, norm=norm, act=act, bias=bias)
        self.pointwise = ConvNormAct(in_channels, out_channels, 1, norm=norm, act=act, bias=bias)
        self.in_channels, self.out_channels = in_channels, out_channels
