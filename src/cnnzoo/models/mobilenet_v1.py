"""MobileNet v1 (Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications", arXiv:1704.04861): a 3x3 stem then 13 depthwise-separable convolutions (table 1).
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnzoo.layers import ClassifierHead, ConvNormAct, DepthwiseSeparableConv, init_weights_he, make_divisible
from cnnzoo.registry import ModelError, register_model

from ._base import Classifier

STEM_CHANNELS = 32
# Table 1, one row per depthwise-separable block: (output channels, stride of the depthwise conv).
BLOCKS = (
    (64, 1),
    (128, 2), (128, 1),
    (256, 2), (256, 1),
    (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)


class MobileNetV1(Classifier):
    """MobileNet v1 with width multiplier ``width_mult`` (alpha, any value > 0).

    Channels are ``make_divisible(c * width_mult, 8)``. The resolution multiplier is simply the input
    size: any size >= 32 works (the head pools globally). Defaults follow Keras' ``MobileNet``:
    ReLU6, no conv bias, dropout 1e-3 before the classifier.
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, norm="batch", act="relu6",
                 drop_rate: float = 1e-3, conv_bias: bool = False, width_mult: float = 1.0):
        super().__init__()
        if width_mult <= 0:
            raise ModelError(f"mobilenet_v1: width_mult must be > 0, got {width_mult}")
        conv = dict(norm=norm, act=act, bias=conv_bias)
        channels = make_divisible(STEM_CHANNELS * width_mult)
        self.stem = ConvNormAct(in_chans, channels, 3, 2, **conv)
        blocks = []
        for out_channels, stride in BLOCKS:
            out_channels = make_divisible(out_channels * width_mult)
            blocks.append(DepthwiseSeparableConv(channels, out_channels, stride, **conv))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.num_features, self.num_classes = channels, num_classes
        self.head = ClassifierHead(channels, num_classes, drop_rate)
        init_weights_he(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


register_model("mobilenet_v1", partial(MobileNetV1), family="mobilenet",
               paper="Howard et al. 2017, MobileNets: Efficient Convolutional Neural Networks for Mobile "
                     "Vision Applications, arXiv:1704.04861",
               input_size=(3, 224, 224))
