"""MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
arXiv:1801.04381): a stack of inverted residuals described by the paper's table 2."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnzoo.layers import ClassifierHead, ConvNormAct, InvertedResidual, init_weights_he, make_divisible
from cnnzoo.registry import register_model

from ._base import Classifier
from ._convert import rename_keys

# Table 2: t = expansion factor, c = output channels, n = repeats, s = stride of the first repeat.
INVERTED_RESIDUAL_SETTING = (
    # t, c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS, LAST_CHANNELS = 32, 1280


class MobileNetV2(Classifier):
    """MobileNetV2 with width multiplier ``width_mult`` (the paper's alpha).

    Channels are ``make_divisible(c * width_mult, 8)``; the last 1x1 conv stays 1280 wide for
    ``width_mult <= 1`` and grows above it, as in the paper, torchvision and Keras.
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, norm="batch", act="relu6",
                 drop_rate: float = 0.2, conv_bias: bool = False, width_mult: float = 1.0):
        super().__init__()
        conv = dict(norm=norm, act=act, bias=conv_bias)
        channels = make_divisible(STEM_CHANNELS * width_mult)
        self.stem = ConvNormAct(in_chans, channels, 3, 2, **conv)

        blocks = []
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out_channels = make_divisible(c * width_mult)
            for i in range(n):
                blocks.append(InvertedResidual(channels, out_channels, s if i == 0 else 1, t, **conv))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)

        self.num_features = make_divisible(LAST_CHANNELS * max(1.0, width_mult))
        self.final_conv = ConvNormAct(channels, self.num_features, 1, **conv)
        self.num_classes = num_classes
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate)
        init_weights_he(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.blocks(self.stem(x)))


def convert_torchvision_mobilenet_v2(state_dict: dict) -> tuple[dict, dict]:
    """torchvision ``mobilenet_v2`` state dict -> ours.

    torchvision numbers the layers inside a block's ``conv`` list, so the numbers mean different
    things depending on whether the block has an expansion conv (``conv.3`` exists only then).
    """
    num_blocks = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("features.")) - 2
    expanded = {i for i in range(1, num_blocks + 1) if f"features.{i}.conv.3.weight" in state_dict}
    last = num_blocks + 1

    def block_key(m):
        i, path = int(m[1]), m[2]
        parts = (["expand", "depthwise"] if i in expanded else ["depthwise"])
        index, rest = path.split(".", 1)
        if int(index) < len(parts):  # a ConvNormAct: .0 conv, .1 norm
            sub, rest = rest.split(".", 1)
            return f"blocks.{i - 1}.{parts[int(index)]}.{'conv' if sub == '0' else 'norm'}.{rest}"
        # then the linear projection: a bare conv followed by a bare batch norm
        kind = "conv" if int(index) == len(parts) else "norm"
        return f"blocks.{i - 1}.project.{kind}.{rest}"

    rules = [
        (r"features\.0\.0\.(.+)", r"stem.conv.\1"),
        (r"features\.0\.1\.(.+)", r"stem.norm.\1"),
        (rf"features\.{last}\.0\.(.+)", r"final_conv.conv.\1"),
        (rf"features\.{last}\.1\.(.+)", r"final_conv.norm.\1"),
        (r"features\.(\d+)\.conv\.(.+)", block_key),
        (r"classifier\.1\.(.+)", r"head.fc.\1"),
    ]
    return rename_keys(state_dict, rules), {}


register_model("mobilenet_v2", partial(MobileNetV2), family="mobilenet",
               paper="Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear Bottlenecks, "
                     "arXiv:1801.04381",
               input_size=(3, 224, 224), convert_reference_weights=convert_torchvision_mobilenet_v2)
