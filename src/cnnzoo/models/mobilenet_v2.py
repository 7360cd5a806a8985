"""MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
arXiv:1801.04381): a stack of inverted residuals described by the paper's table 2."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

import torch
from torch import nn

from cnnzoo.layers import ClassifierHead, ConvNormAct, InvertedResidual, get_norm_layer, init_weights_he, make_divisible
from cnnzoo.registry import register_model

from ._base import Classifier, conv_names, pick_layout
from ._convert import Rule, rename_keys

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


@dataclass(frozen=True)
class Layout:
    """Where a MobileNetV2's reference differs from ours in what it computes (and so in which weights fit)."""
    norm_eps: Optional[float] = None                    # None: PyTorch's 1e-5
    padding: Optional[str] = None                       # of every conv; None: symmetric
    block_width: Callable[[float], int] = make_divisible  # a block's output channels from c * width_mult
    drop_rate: float = 0.2                              # before the classifier


LAYOUTS = {
    "torch": Layout(),
    # keras.applications.MobileNetV2: eps 1e-3, TensorFlow's "same" (its ZeroPadding2D "correct_pad"
    # before a stride-2 depthwise conv is the same pads), blocks _make_divisible(int(c * alpha)) wide
    # (the int() first: one of 8 more channels for some alpha), no dropout.
    "keras": Layout(norm_eps=1e-3, padding="tf", block_width=lambda v: make_divisible(int(v)), drop_rate=0.0),
}


class MobileNetV2(Classifier):
    """MobileNetV2 with width multiplier ``width_mult`` (the paper's alpha).

    Channels are ``make_divisible(c * width_mult, 8)``; the last 1x1 conv stays 1280 wide for
    ``width_mult <= 1`` and grows above it, as in the paper, torchvision and Keras.
    ``layout="keras"`` is Keras' network exactly (see ``LAYOUTS``), the one its weight files fit;
    ``drop_rate=None`` is the layout's.
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, norm="batch", act="relu6",
                 drop_rate: Optional[float] = None, conv_bias: bool = False, width_mult: float = 1.0,
                 layout: str = "torch"):
        super().__init__()
        self.layout, spec = layout, pick_layout(LAYOUTS, layout, "mobilenet_v2")
        conv = dict(norm=get_norm_layer(norm, eps=spec.norm_eps), act=act, bias=conv_bias)
        channels = make_divisible(STEM_CHANNELS * width_mult)
        self.stem = ConvNormAct(in_chans, channels, 3, 2, padding=spec.padding, **conv)

        blocks: list[nn.Module] = []
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out_channels = spec.block_width(c * width_mult)
            for i in range(n):
                blocks.append(InvertedResidual(channels, out_channels, s if i == 0 else 1, t, padding=spec.padding,
                                               **conv))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)

        self.num_features = make_divisible(LAST_CHANNELS * max(1.0, width_mult))
        self.final_conv = ConvNormAct(channels, self.num_features, 1, **conv)
        self.num_classes = num_classes
        self.head = ClassifierHead(self.num_features, num_classes, spec.drop_rate if drop_rate is None else drop_rate)
        init_weights_he(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.blocks(self.stem(x)))

    def keras_layer_names(self) -> dict[str, str]:
        names = conv_names("stem", "Conv1", "bn_Conv1", "Conv1_relu", pad="Conv1")
        for i in range(len(self.blocks)):
            p = f"block_{i}_" if i else "expanded_conv_"  # Keras' block_id is our index
            names.update(conv_names(f"blocks.{i}.expand", f"{p}expand", f"{p}expand_BN", f"{p}expand_relu"))
            names.update(conv_names(f"blocks.{i}.depthwise", f"{p}depthwise", f"{p}depthwise_BN",
                                    f"{p}depthwise_relu", pad=f"{p}pad"))
            names.update(conv_names(f"blocks.{i}.project", f"{p}project", f"{p}project_BN"))
            names[f"blocks.{i}.add"] = f"{p}add"  # the residual sum (a row of the summary)
        names.update(conv_names("final_conv", "Conv_1", "Conv_1_bn", "out_relu"))
        return names | {"head.pool": "global_average_pooling2d", "head.fc": "predictions"}


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

    rules: list[Rule] = [
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
