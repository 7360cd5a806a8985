"""ShuffleNetV2 (Ma et al. 2018, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", arXiv:1807.11164): channel split, two branches, concatenation and channel shuffle (figure 3),
in the layout of table 5."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnzoo.layers import ClassifierHead, ConvNormAct, ShuffleUnit, init_weights_he, make_divisible
from cnnzoo.registry import ModelError, register_model

from ._base import Classifier

# Table 5: three stages of 4, 8 and 4 units (the first of each at stride 2) after a 24-wide 3x3
# stride-2 conv and a 3x3 stride-2 max pool; then a 1x1 conv and global pooling.
REPEATS = (4, 8, 4)
STEM_CHANNELS = 24
# Output channels of stages 2-4 and of conv5, per complexity ("0.5x" ... "2x").
WIDTHS = {
    "x0_5": (48, 96, 192, 1024),
    "x1_0": (116, 232, 464, 1024),
    "x1_5": (176, 352, 704, 1024),
    "x2_0": (244, 488, 976, 2048),
}


class ShuffleNetV2(Classifier):
    """ShuffleNetV2 at one of table 5's complexities (``widths``), optionally narrowed further by
    ``width_mult``: every width becomes ``make_divisible(c * width_mult, 4)`` (even, as the channel
    split needs; 1.0 leaves the table's widths as they are)."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, norm="batch", act="relu",
                 drop_rate: float = 0.0, conv_bias: bool = False, width_mult: float = 1.0,
                 widths: str = "x1_0"):
        super().__init__()
        if widths not in WIDTHS:
            raise ModelError(f"shufflenet_v2: widths must be one of {', '.join(WIDTHS)}, got {widths!r}")
        if width_mult <= 0:
            raise ModelError(f"shufflenet_v2: width_mult must be > 0, got {width_mult}")
        conv = dict(norm=norm, act=act, bias=conv_bias)
        *stage_widths, last = (make_divisible(c * width_mult, 4) for c in WIDTHS[widths])
        channels = make_divisible(STEM_CHANNELS * width_mult, 4)
        self.stem = ConvNormAct(in_chans, channels, 3, 2, **conv)
        self.pool = nn.MaxPool2d(3, 2, 1)

        stages = []
        for repeats, out_channels in zip(REPEATS, stage_widths):
            stages.append(nn.Sequential(*(ShuffleUnit(channels if i == 0 else out_channels, out_channels,
                                                      2 if i == 0 else 1, **conv) for i in range(repeats))))
            channels = out_channels
        self.stages = nn.Sequential(*stages)

        self.num_features = last
        self.final_conv = ConvNormAct(channels, last, 1, **conv)
        self.num_classes = num_classes
        self.head = ClassifierHead(last, num_classes, drop_rate)
        init_weights_he(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.stages(self.pool(self.stem(x))))


PAPER = ("Ma et al. 2018, ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design, "
         "arXiv:1807.11164")
for _widths in WIDTHS:
    register_model(f"shufflenet_v2_{_widths}", partial(ShuffleNetV2, widths=_widths), family="shufflenet",
                   paper=PAPER)
