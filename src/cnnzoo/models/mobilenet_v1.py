"""MobileNet v1 (Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications", arXiv:1704.04861): a 3x3 stem then 13 depthwise-separable convolutions (table 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional, Union

import torch
from torch import nn

from cnnzoo.layers import (
    ClassifierHead,
    ConvNormAct,
    DepthwiseSeparableConv,
    get_norm_layer,
    init_weights_he,
    make_divisible,
)
from cnnzoo.registry import ModelError, register_model

from ._base import Classifier, conv_names, pick_layout

STEM_CHANNELS = 32
# Table 1, one row per depthwise-separable block: (output channels, stride of the depthwise conv).
BLOCKS = (
    (64, 1),
    (128, 2), (128, 1),
    (256, 2), (256, 1),
    (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)


@dataclass(frozen=True)
class Layout:
    """Where a MobileNet's reference differs from ours in what it computes (and so in which weights fit)."""
    norm_eps: Optional[float] = None                    # None: PyTorch's 1e-5
    stem_padding: Union[str, tuple, None] = None        # for ConvNormAct: None is symmetric
    strided_padding: Union[str, tuple, None] = None     # before each stride-2 depthwise conv
    width: Callable[[float], int] = make_divisible      # channels from c * width_mult


LAYOUTS = {
    "torch": Layout(),
    # keras.applications.MobileNet: batch norm's Keras default eps, TensorFlow's "same" in conv1, an
    # explicit ZeroPadding2D((0, 1), (0, 1)) before each stride-2 depthwise conv (whatever the size),
    # and int(c * alpha) channels. Its head, a 1x1 conv "conv_preds", is our linear layer reshaped.
    "keras": Layout(norm_eps=1e-3, stem_padding="tf", strided_padding=(0, 1, 0, 1), width=int),
}


class MobileNetV1(Classifier):
    """MobileNet v1 with width multiplier ``width_mult`` (alpha, any value > 0).

    Channels are ``make_divisible(c * width_mult, 8)`` (Keras': ``int(c * width_mult)``). The
    resolution multiplier is simply the input size: any size >= 32 works (the head pools globally).
    Defaults follow Keras' ``MobileNet``: ReLU6, no conv bias, dropout 1e-3 before the classifier.
    ``layout="keras"`` is Keras' network exactly (see ``LAYOUTS``), the one its weight files fit.
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, norm="batch", act="relu6",
                 drop_rate: float = 1e-3, conv_bias: bool = False, width_mult: float = 1.0,
                 layout: str = "torch"):
        super().__init__()
        if width_mult <= 0:
            raise ModelError(f"mobilenet_v1: width_mult must be > 0, got {width_mult}")
        self.layout, spec = layout, pick_layout(LAYOUTS, layout, "mobilenet_v1")
        conv = dict(norm=get_norm_layer(norm, eps=spec.norm_eps), act=act, bias=conv_bias)
        channels = spec.width(STEM_CHANNELS * width_mult)
        self.stem = ConvNormAct(in_chans, channels, 3, 2, padding=spec.stem_padding, **conv)
        blocks = []
        for out_channels, stride in BLOCKS:
            out_channels = spec.width(out_channels * width_mult)
            padding = spec.strided_padding if stride == 2 else None
            blocks.append(DepthwiseSeparableConv(channels, out_channels, stride, padding=padding, **conv))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.num_features, self.num_classes = channels, num_classes
        self.head = ClassifierHead(channels, num_classes, drop_rate)
        init_weights_he(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def keras_layer_names(self) -> dict[str, str]:
        names = conv_names("stem", "conv1", "conv1_bn", "conv1_relu", pad="conv1")
        for i in range(len(self.blocks)):
            n = i + 1  # Keras' block_id
            names.update(conv_names(f"blocks.{i}.depthwise", f"conv_dw_{n}", f"conv_dw_{n}_bn",
                                    f"conv_dw_{n}_relu", pad=f"conv_pad_{n}"))
            names.update(conv_names(f"blocks.{i}.pointwise", f"conv_pw_{n}", f"conv_pw_{n}_bn", f"conv_pw_{n}_relu"))
        return names | {"head.pool": "global_average_pooling2d", "head.drop": "dropout", "head.fc": "conv_preds"}


register_model("mobilenet_v1", partial(MobileNetV1), family="mobilenet",
               paper="Howard et al. 2017, MobileNets: Efficient Convolutional Neural Networks for Mobile "
                     "Vision Applications, arXiv:1704.04861",
               input_size=(3, 224, 224))
