"""ResNet (He et al. 2015, "Deep Residual Learning for Image Recognition", arXiv:1512.03385).

A 7x7 stem, four stages of residual blocks (the table below, the paper's table 1), global pooling
and a linear classifier. ResNet-18/34 use basic blocks; 50/101/152 bottlenecks.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Optional, Sequence, Type, Union

import torch
from torch import nn

from cnnzoo.layers import (
    BasicBlock,
    Bottleneck,
    ClassifierHead,
    ConvNormAct,
    get_norm_layer,
    init_weights_he,
    make_divisible,
)
from cnnzoo.registry import ModelError, register_model

from ._base import Classifier, conv_names, pick_layout
from ._convert import Rule, rename_keys, shift

# Per stage: (block width before expansion, stride of the first block). Depths come from `layers`.
STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))
BLOCKS: dict[str, Union[Type[BasicBlock], Type[Bottleneck]]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


@dataclass(frozen=True)
class Layout:
    """Where a ResNet's reference differs from ours in what it computes (and so in which weights fit)."""
    norm_eps: Optional[float] = None  # None: PyTorch's 1e-5
    stride_in_1x1: bool = False       # the paper's bottleneck, whatever the constructor says
    conv_bias: bool = False           # every conv biased, before its batch norm too


# keras.applications.ResNet50/101/152: the paper's bottleneck with biased convolutions and eps 1.001e-5
LAYOUTS = {"torch": Layout(), "keras": Layout(norm_eps=1.001e-5, stride_in_1x1=True, conv_bias=True)}


class ResNet(Classifier):
    """ResNet built from ``block`` and per-stage depths ``layers`` (e.g. (3, 4, 6, 3) for ResNet-50).

    ``stride_in_1x1=True`` gives the paper's bottleneck (stride in the first 1x1); the default puts
    it in the 3x3 like torchvision. ``width_mult`` scales every width (1.0 is the reference).
    ``layout="keras"`` is Keras' network (see ``LAYOUTS``), the one its weight files fit.
    """

    def __init__(self, block: Union[str, Type[BasicBlock], Type[Bottleneck]] = "bottleneck",
                 layers: Sequence[int] = (3, 4, 6, 3), num_classes: int = 1000, in_chans: int = 3,
                 norm="batch", act="relu", drop_rate: float = 0.0, conv_bias: bool = False,
                 width_mult: float = 1.0, stride_in_1x1: bool = False, layout: str = "torch"):
        super().__init__()
        if isinstance(block, str):  # by name, so model arguments stay plain data (checkpoints, CLI)
            if block not in BLOCKS:
                raise ModelError(f"resnet: unknown block {block!r}; choose one of {', '.join(BLOCKS)}")
            block = BLOCKS[block]
        self.layout, spec = layout, pick_layout(LAYOUTS, layout, "resnet")
        stride_in_1x1 = stride_in_1x1 or spec.stride_in_1x1
        conv = dict(norm=get_norm_layer(norm, eps=spec.norm_eps), act=act, bias=conv_bias or spec.conv_bias)
        stem_width = make_divisible(64 * width_mult)
        self.stem = ConvNormAct(in_chans, stem_width, 7, 2, **conv)
        self.stem_pool = nn.MaxPool2d(3, stride=2, padding=1)

        stages, channels = [], stem_width
        for (width, stride), depth in zip(STAGES, layers):
            width = make_divisible(width * width_mult)
            blocks = []
            for i in range(depth):
                blocks.append(block(channels, width, stride if i == 0 else 1,
                                    stride_in_1x1=stride_in_1x1, **conv))
                channels = blocks[-1].out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)

        self.num_features, self.num_classes = channels, num_classes
        self.head = ClassifierHead(channels, num_classes, drop_rate)
        init_weights_he(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem_pool(self.stem(x)))

    def keras_layer_names(self) -> dict[str, str]:
        names = conv_names("stem", "conv1_conv", "conv1_bn", "conv1_relu") | {"stem_pool": "pool1_pool"}
        for s, stage in enumerate(self.stages):
            for b, _ in enumerate(stage.children()):
                path, p = f"stages.{s}.{b}", f"conv{s + 2}_block{b + 1}_"
                for i in (1, 2, 3):
                    names.update(conv_names(f"{path}.conv{i}", f"{p}{i}_conv", f"{p}{i}_bn", f"{p}{i}_relu"))
                names.update(conv_names(f"{path}.shortcut", f"{p}0_conv", f"{p}0_bn"))
                names.update({f"{path}.add": f"{p}add", f"{path}.act": f"{p}out"})
        return names | {"head.pool": "avg_pool", "head.fc": "predictions"}


def convert_torchvision_resnet(state_dict: dict) -> tuple[dict, dict]:
    """torchvision ``resnet*`` state dict -> ours. It implies no options: torchvision's blocks are
    our default (stride in the 3x3)."""
    rules: list[Rule] = [
        (r"conv1\.(.+)", r"stem.conv.\1"),
        (r"bn1\.(.+)", r"stem.norm.\1"),
        (r"layer(\d)\.(\d+)\.conv(\d)\.(.+)", lambda m: f"stages.{shift(m[1])}.{m[2]}.conv{m[3]}.conv.{m[4]}"),
        (r"layer(\d)\.(\d+)\.bn(\d)\.(.+)", lambda m: f"stages.{shift(m[1])}.{m[2]}.conv{m[3]}.norm.{m[4]}"),
        (r"layer(\d)\.(\d+)\.downsample\.0\.(.+)", lambda m: f"stages.{shift(m[1])}.{m[2]}.shortcut.conv.{m[3]}"),
        (r"layer(\d)\.(\d+)\.downsample\.1\.(.+)", lambda m: f"stages.{shift(m[1])}.{m[2]}.shortcut.norm.{m[3]}"),
        (r"fc\.(.+)", r"head.fc.\1"),
    ]
    return rename_keys(state_dict, rules), {}


_PAPER = "He et al. 2015, Deep Residual Learning for Image Recognition, arXiv:1512.03385"
for _name, _block, _layers in [
    ("resnet18", "basic", (2, 2, 2, 2)),
    ("resnet34", "basic", (3, 4, 6, 3)),
    ("resnet50", "bottleneck", (3, 4, 6, 3)),
    ("resnet101", "bottleneck", (3, 4, 23, 3)),
    ("resnet152", "bottleneck", (3, 8, 36, 3)),
]:
    register_model(_name, partial(ResNet, block=_block, layers=_layers), family="resnet", paper=_PAPER,
                   input_size=(3, 224, 224), convert_reference_weights=convert_torchvision_resnet)
