"""The Inception module of GoogLeNet (Szegedy et al. 2014, figure 2), in its naive and reduced forms."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .conv import ConvNormAct


class InceptionNaive(nn.Module):
    """Figure 2(a): 1x1, 3x3 and 5x5 convolutions and a 3x3 max-pool side by side, concatenated.

    The pooling branch passes its input through unchanged in width, so the output always has more
    channels than the input: the reason the paper adds 1x1 reductions.
    """

    def __init__(self, in_channels: int, c1x1: int, c3x3: int, c5x5: int,
                 norm="batch", act="relu", bias: bool = False):
        super().__init__()
        conv = dict(norm=norm, act=act, bias=bias)
        self.branch1 = ConvNormAct(in_channels, c1x1, 1, **conv)
        self.branch2 = ConvNormAct(in_channels, c3x3, 3, **conv)
        self.branch3 = ConvNormAct(in_channels, c5x5, 5, **conv)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1)
        self.out_channels = c1x1 + c3x3 + c5x5 + in_channels

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionBlock(nn.Module):
    """Figure 2(b), the block GoogLeNet stacks: 1x1 reductions before the 3x3 and the large convolution,
    a 1x1 projection after the pooling.

    ``large_kernel`` is the paper's 5; torchvision's GoogLeNet uses 3 there (a known quirk its
    pretrained weights depend on), so 3 reproduces its layout.
    """

    def __init__(self, in_channels: int, c1x1: int, c3x3_reduce: int, c3x3: int, c5x5_reduce: int,
                 c5x5: int, pool_proj: int, large_kernel: int = 5, norm="batch", act="relu",
                 bias: bool = False):
        super().__init__()
        conv = dict(norm=norm, act=act, bias=bias)
        self.branch1 = ConvNormAct(in_channels, c1x1, 1, **conv)
        self.branch2 = nn.Sequential(OrderedDict(
            reduce=ConvNormAct(in_channels, c3x3_reduce, 1, **conv),
            conv=ConvNormAct(c3x3_reduce, c3x3, 3, **conv)))
        self.branch3 = nn.Sequential(OrderedDict(
            reduce=ConvNormAct(in_channels, c5x5_reduce, 1, **conv),
            conv=ConvNormAct(c5x5_reduce, c5x5, large_kernel, **conv)))
        self.branch4 = nn.Sequential(OrderedDict(
            pool=nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            proj=ConvNormAct(in_channels, pool_proj, 1, **conv)))
        self.out_channels = c1x1 + c3x3 + c5x5 + pool_proj

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)
