"""EfficientNet (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", arXiv:1905.11946): MBConv blocks with squeeze-excitation and swish, the B0 table (table 1)
scaled in width and depth by one compound coefficient (section 3.3); and EfficientNet-Lite (Liu et al.
2020, "Higher accuracy on vision models with EfficientNet-Lite", TensorFlow blog; the reference is
tensorflow/tpu's models/official/efficientnet/lite): the same network for mobile accelerators, with
ReLU6 for swish, no squeeze-excitation, and the stem, head, first and last stage left unscaled."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from cnnzoo.layers import (
    ClassifierHead,
    ConvNormAct,
    InvertedResidual,
    get_norm_layer,
    init_weights_he,
    make_divisible,
)
from cnnzoo.registry import ModelError, register_model

from ._base import Classifier

# Table 1 (EfficientNet-B0): e = expansion, k = depthwise kernel, s = stride of the first repeat,
# c = output channels, n = repeats. The stem is a 32-wide 3x3 stride-2 conv, the head a 1280-wide 1x1.
STAGES = (
    # e, k, s,   c, n
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
SE_RATIO = 0.25          # of the block's input width (section 4: "squeeze-and-excitation optimization")
DROP_PATH_RATE = 0.2     # stochastic depth of the last block, falling linearly to 0 at the first
PADDINGS = ("symmetric", "tf")


@dataclass(frozen=True)
class Scaling:
    """One variant's compound scaling: width and depth multipliers, the resolution it was trained at,
    the dropout before the classifier (the reference code's ``efficientnet_params``)."""
    width: float
    depth: float
    resolution: int
    dropout: float


SCALINGS = {
    "b0": Scaling(1.0, 1.0, 224, 0.2), "b1": Scaling(1.0, 1.1, 240, 0.2),
    "b2": Scaling(1.1, 1.2, 260, 0.3), "b3": Scaling(1.2, 1.4, 300, 0.3),
    "b4": Scaling(1.4, 1.8, 380, 0.4), "b5": Scaling(1.6, 2.2, 456, 0.4),
    "b6": Scaling(1.8, 2.6, 528, 0.5), "b7": Scaling(2.0, 3.1, 600, 0.5),
    # EfficientNet-Lite's (efficientnet_lite_builder.efficientnet_lite_params)
    "lite0": Scaling(1.0, 1.0, 224, 0.2), "lite1": Scaling(1.0, 1.1, 240, 0.2),
    "lite2": Scaling(1.1, 1.2, 260, 0.3), "lite3": Scaling(1.2, 1.4, 280, 0.3),
    "lite4": Scaling(1.4, 1.8, 300, 0.3),
}


class EfficientNet(Classifier):
    """EfficientNet with compound scaling ``width_mult`` x ``depth_mult`` (the variant's by default).

    Widths are ``make_divisible(c * width_mult, 8)``, repeats ``ceil(n * depth_mult)``. ``lite=True``
    builds EfficientNet-Lite: ``act`` ReLU6 instead of swish, no squeeze-excitation, stem (32) and
    head (1280) kept at B0's width and the first and last stages at B0's depth (the Lite reference's
    ``fix_head_stem``). ``padding="tf"`` pads as TensorFlow's "SAME", which weights trained in
    TensorFlow need. ``norm_eps`` is the batch norms' epsilon: 1e-5 for torchvision's B0-B4, 1e-3
    for weights ported from TensorFlow (torchvision's B5-B7, the Lite files).
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, norm="batch", act="silu",
                 drop_rate: float = 0.2, conv_bias: bool = False, width_mult: float = 1.0,
                 depth_mult: float = 1.0, drop_path_rate: float = DROP_PATH_RATE, lite: bool = False,
                 padding: str = "symmetric", norm_eps: float = 1e-5):
        super().__init__()
        if width_mult <= 0 or depth_mult <= 0:
            raise ModelError(f"efficientnet: width_mult and depth_mult must be > 0, got {width_mult}, {depth_mult}")
        if padding not in PADDINGS:
            raise ModelError(f"efficientnet: padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        norm = get_norm_layer(norm, eps=norm_eps) if isinstance(norm, str) else norm
        conv = dict(norm=norm, act=act, bias=conv_bias, **({"padding": "tf"} if padding == "tf" else {}))
        width = partial(_scale_width, width_mult=width_mult)

        channels = STEM_CHANNELS if lite else width(STEM_CHANNELS)
        self.stem = ConvNormAct(in_chans, channels, 3, 2, **conv)

        repeats = [n if lite and i in (0, len(STAGES) - 1) else math.ceil(n * depth_mult)
                   for i, (*_, n) in enumerate(STAGES)]
        total = sum(repeats)
        blocks: list[nn.Module] = []
        for (e, k, s, c, _), n in zip(STAGES, repeats):
            out_channels = width(c)
            for i in range(n):
                blocks.append(InvertedResidual(
                    channels, out_channels, s if i == 0 else 1, e, kernel_size=k,
                    hidden_channels=make_divisible(channels * e),
                    se_channels=0 if lite else max(1, int(channels * SE_RATIO)), se_act=act, se_gate="sigmoid",
                    drop_path=drop_path_rate * len(blocks) / total, **conv))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)

        self.num_features = HEAD_CHANNELS if lite else width(HEAD_CHANNELS)
        self.final_conv = ConvNormAct(channels, self.num_features, 1, **conv)
        self.num_classes = num_classes
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate)
        init_weights_he(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.blocks(self.stem(x)))


def _scale_width(channels: int, width_mult: float) -> int:
    return make_divisible(channels * width_mult)


PAPER = ("Tan & Le 2019, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, "
         "arXiv:1905.11946")
LITE_PAPER = ("Liu et al. 2020, Higher accuracy on vision models with EfficientNet-Lite (TensorFlow blog; "
              "EfficientNet's compound scaling, arXiv:1905.11946)")


def _register(variant: str) -> None:
    scaling, lite = SCALINGS[variant], variant.startswith("lite")
    # torchvision builds B5-B7 with TensorFlow's batch-norm epsilon: their weights are ported from it
    eps = 1e-3 if lite or variant in ("b5", "b6", "b7") else 1e-5
    builder = partial(EfficientNet, width_mult=scaling.width, depth_mult=scaling.depth, drop_rate=scaling.dropout,
                      lite=lite, norm_eps=eps)
    if lite:  # ReLU6 instead of swish, as the Lite reference
        builder = partial(builder, act="relu6")
    register_model(f"efficientnet_{variant}", builder, family="efficientnet", paper=LITE_PAPER if lite else PAPER,
                   input_size=(3, scaling.resolution, scaling.resolution))


for _variant in SCALINGS:
    _register(_variant)
