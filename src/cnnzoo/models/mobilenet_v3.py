"""MobileNetV3 (Howard et al. 2019, "Searching for MobileNetV3", arXiv:1905.02244): inverted residuals
with squeeze-excitation and hard-swish, found by architecture search; tables 1 (Large) and 2 (Small)."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnzoo.layers import (
    ConvNormAct,
    HiddenLayerHead,
    InvertedResidual,
    get_norm_layer,
    init_weights_he,
    make_divisible,
)
from cnnzoo.registry import ModelError, register_model

from ._base import Classifier

# Tables 1 and 2: k = depthwise kernel, exp = expanded width, c = output channels, se = squeeze-
# excitation, act = "RE" (ReLU) or "HS" (hard-swish), s = stride. The stem is 16 wide (3x3, stride 2,
# hard-swish); the last 1x1 conv is 6x the last block's width, then the 1280 (Large) or 1024 (Small)
# wide hidden layer of the head.
LARGE = (
    # k, exp,   c,   se,    act,  s
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
)
SMALL = (
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
)
CONFIGS = {"large": (LARGE, 1280), "small": (SMALL, 1024)}
STEM_CHANNELS = 16
ACTS = {"RE": "relu", "HS": "hardswish"}


class MobileNetV3(Classifier):
    """MobileNetV3-Large or -Small with width multiplier ``width_mult``.

    Every width, the head's hidden layer included, is ``make_divisible(c * width_mult, 8)``, and a
    squeeze-excitation's bottleneck is ``make_divisible(expanded / 4, 8)`` (section 5.3), as in
    torchvision and the TensorFlow reference. ``act`` replaces hard-swish ("HS" rows), the ReLU rows
    stay ReLU. Batch norms use eps 1e-3, as the reference implementations do.
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, norm="batch", act="hardswish",
                 drop_rate: float = 0.2, conv_bias: bool = False, width_mult: float = 1.0,
                 variant: str = "large"):
        super().__init__()
        if variant not in CONFIGS:
            raise ModelError(f"mobilenet_v3: variant must be one of {', '.join(CONFIGS)}, got {variant!r}")
        if width_mult <= 0:
            raise ModelError(f"mobilenet_v3: width_mult must be > 0, got {width_mult}")
        table, hidden = CONFIGS[variant]
        norm = get_norm_layer(norm, eps=1e-3) if isinstance(norm, str) else norm
        acts = {"RE": "relu", "HS": act}
        channels = make_divisible(STEM_CHANNELS * width_mult)
        self.stem = ConvNormAct(in_chans, channels, 3, 2, norm=norm, act=act, bias=conv_bias)

        blocks = []
        for k, exp, c, se, block_act, s in table:
            out_channels, expanded = make_divisible(c * width_mult), make_divisible(exp * width_mult)
            blocks.append(InvertedResidual(
                channels, out_channels, s, 1, norm=norm, act=acts[block_act], bias=conv_bias, kernel_size=k,
                hidden_channels=expanded, se_channels=make_divisible(expanded // 4) if se else 0,
                se_act="relu", se_gate="hardsigmoid"))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)

        self.final_conv = ConvNormAct(channels, 6 * channels, 1, norm=norm, act=act, bias=conv_bias)
        self.num_features = make_divisible(hidden * width_mult)
        self.num_classes = num_classes
        self.head = HiddenLayerHead(6 * channels, self.num_features, num_classes, drop_rate, act=act)
        init_weights_he(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.blocks(self.stem(x)))


PAPER = "Howard et al. 2019, Searching for MobileNetV3, arXiv:1905.02244"
register_model("mobilenet_v3_large", partial(MobileNetV3, variant="large"), family="mobilenet", paper=PAPER)
register_model("mobilenet_v3_small", partial(MobileNetV3, variant="small"), family="mobilenet", paper=PAPER)
