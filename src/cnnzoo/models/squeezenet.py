"""SqueezeNet (Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and
<0.5MB model size", arXiv:1602.07360): Fire modules (figure 1) between max pools, table 1; and
SqueezeNet 1.1 (the authors' repository, forresti/SqueezeNet: a 3x3 stem and earlier pooling, 2.4x
fewer multiply-adds at the same accuracy)."""
from __future__ import annotations

from functools import partial
from typing import Union

import torch
from torch import nn

from cnnzoo.layers import ConvClassifierHead, ConvNormAct, Fire, init_weights_he, make_divisible
from cnnzoo.registry import ModelError, register_model

from ._base import Classifier

POOL = "M"  # a 3x3 stride-2 max pool (rounding up, as the reference's Caffe model)
Layer = Union[str, tuple[int, int]]  # POOL or a Fire module's (squeeze, expand)
# Per version: the stem (output channels, kernel), then Fire modules as (squeeze, expand) with both
# expand branches ``expand`` wide, and pools. Table 1 for 1.0.
CONFIGS: dict[str, tuple[tuple[int, int], list[Layer]]] = {
    "1_0": ((96, 7), [POOL, (16, 64), (16, 64), (32, 128), POOL, (32, 128), (48, 192), (48, 192), (64, 256),
                      POOL, (64, 256)]),
    "1_1": ((64, 3), [POOL, (16, 64), (16, 64), POOL, (32, 128), (32, 128), POOL, (48, 192), (48, 192),
                      (64, 256), (64, 256)]),
}


class SqueezeNet(Classifier):
    """SqueezeNet 1.0 or 1.1. As in the paper: no normalisation and a bias in every convolution by
    default (``norm="batch"`` adds batch norms), dropout 0.5 before the classifier, which is a 1x1
    convolution followed by ReLU and global pooling. ``width_mult`` scales every width (rounded to 8)."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, norm="none", act="relu",
                 drop_rate: float = 0.5, conv_bias=None, width_mult: float = 1.0, version: str = "1_0"):
        super().__init__()
        if version not in CONFIGS:
            raise ModelError(f"squeezenet: version must be one of {', '.join(CONFIGS)}, got {version!r}")
        if width_mult <= 0:
            raise ModelError(f"squeezenet: width_mult must be > 0, got {width_mult}")
        conv = dict(norm=norm, act=act, bias=conv_bias)
        (stem_channels, stem_kernel), layers = CONFIGS[version]
        channels = make_divisible(stem_channels * width_mult)
        self.stem = ConvNormAct(in_chans, channels, stem_kernel, 2, padding=0, **conv)
        blocks: list[nn.Module] = []
        for layer in layers:
            if isinstance(layer, str):  # POOL
                blocks.append(nn.MaxPool2d(3, 2, ceil_mode=True))
                continue
            squeeze, expand = (make_divisible(c * width_mult) for c in layer)
            blocks.append(Fire(channels, squeeze, expand, expand, **conv))
            channels = 2 * expand
        self.blocks = nn.Sequential(*blocks)
        self.num_features = channels
        self.num_classes = num_classes
        self.head = ConvClassifierHead(channels, num_classes, drop_rate, act=act)
        init_weights_he(self)
        self.head.reset(num_classes)  # its convolution starts at N(0, 0.01), as torchvision's final_conv

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


PAPER = ("Iandola et al. 2016, SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB "
         "model size, arXiv:1602.07360")
register_model("squeezenet1_0", partial(SqueezeNet, version="1_0"), family="squeezenet", paper=PAPER)
register_model("squeezenet1_1", partial(SqueezeNet, version="1_1"), family="squeezenet", paper=PAPER + " (v1.1)")
