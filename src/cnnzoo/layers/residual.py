"""ResNet's residual blocks (He et al. 2015, figure 5): ``act(F(x) + shortcut(x))``."""
from __future__ import annotations

from torch import nn

from .conv import ConvNormAct
from .helpers import make_act


def make_shortcut(in_channels: int, out_channels: int, stride: int, norm, bias: bool) -> nn.Module:
    """Identity when the shape is kept; otherwise the paper's option B, a strided 1x1 projection."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return ConvNormAct(in_channels, out_channels, 1, stride, norm=norm, act="none", bias=bias)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34). ``width`` is the block's channel count."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1, norm="batch", act="relu",
                 bias: bool = False, stride_in_1x1: bool = False):
        super().__init__()
        del stride_in_1x1  # the first conv is the 3x3 either way
        out_channels = width * self.expansion
        self.conv1 = ConvNormAct(in_channels, width, 3, stride, norm=norm, act=act, bias=bias)
        self.conv2 = ConvNormAct(width, out_channels, 3, norm=norm, act="none", bias=bias)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, norm, bias)
        self.act = make_act(act)
        self.out_channels = out_channels

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        out += self.shortcut(x)  # in place, as torchvision: saves one feature-map allocation per block
        return self.act(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand by 4 (ResNet-50/101/152).

    The stride sits in the 3x3 by default, as in torchvision ("ResNet v1.5"; better accuracy, more
    MACs); ``stride_in_1x1=True`` puts it in the first 1x1, as the paper and Keras do.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, norm="batch", act="relu",
                 bias: bool = False, stride_in_1x1: bool = False):
        super().__init__()
        out_channels = width * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNormAct(in_channels, width, 1, stride_1x1, norm=norm, act=act, bias=bias)
        self.conv2 = ConvNormAct(width, width, 3, stride_3x3, norm=norm, act=act, bias=bias)
        self.conv3 = ConvNormAct(width, out_channels, 1, norm=norm, act="none", bias=bias)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, norm, bias)
        self.act = make_act(act)
        self.out_channels = out_channels

    def forward(self, x):
        out = self.conv3(self.conv2(self.conv1(x)))
        out += self.shortcut(x)
        return self.act(out)
