"""VGG (Simonyan & Zisserman 2014, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", arXiv:1409.1556): stacks of 3x3 convolutions and 2x2 max-pools, then a 3-layer MLP.

The configurations are the paper's table 1 columns A, B, D, E, written as torchvision writes them:
a number is a 3x3 conv with that many channels, "M" a max-pool.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Optional, Sequence, Union

import torch
from torch import nn

from cnnzoo.layers import ConvNormAct, MlpHead, init_weights_he, make_divisible
from cnnzoo.registry import ModelError, register_model

from ._base import Classifier, pick_layout
from ._convert import rename_keys

CFGS: dict[str, list[Union[int, str]]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # VGG-11
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # VGG-13
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],  # VGG-16
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],  # VGG-19
}
HIDDEN = 4096  # width of the two hidden fully connected layers
POOL_SIZE = 7  # the head pools any input to 7x7 (as torchvision), so small images work too


@dataclass(frozen=True)
class Layout:
    """Where a VGG's reference differs from ours."""
    drop_rate: float = 0.5  # after each hidden layer of the head


# keras.applications.VGG16/VGG19 have no dropout. They flatten the last map channels-last, which
# only orders fc1's inputs: the Keras weight reader reorders fc1's columns, the network is the same.
# They have no pool either (the map is flattened as it is): pool_size = input side / 32 matches it.
LAYOUTS = {"torch": Layout(), "keras": Layout(drop_rate=0.0)}


def layer_names(cfg: Sequence[Union[int, str]]) -> list[str]:
    """Keras-style names for the entries of ``cfg``: 'block1_conv1', 'block1_conv2', 'block1_pool', ..."""
    names, block, conv = [], 1, 1
    for v in cfg:
        if v == "M":
            names.append(f"block{block}_pool")
            block, conv = block + 1, 1
        else:
            names.append(f"block{block}_conv{conv}")
            conv += 1
    return names


class VGG(Classifier):
    """VGG from a configuration list. ``num_features`` is the MLP's hidden width (4096): the MLP is
    the head, and ``forward_head(x, pre_logits=True)`` returns its last hidden vector (as timm).

    The head pools the last map to ``pool_size`` x ``pool_size`` first. ``layout="keras"`` is Keras'
    network (see ``LAYOUTS``); ``drop_rate=None`` is the layout's.
    """

    def __init__(self, cfg: Sequence[Union[int, str]] = tuple(CFGS["D"]), num_classes: int = 1000,
                 in_chans: int = 3, norm="none", act="relu", drop_rate: Optional[float] = None,
                 conv_bias: bool = True, width_mult: float = 1.0, pool_size: int = POOL_SIZE,
                 layout: str = "torch"):
        super().__init__()
        self.layout, spec = layout, pick_layout(LAYOUTS, layout, "vgg")
        drop_rate = spec.drop_rate if drop_rate is None else drop_rate
        layers: list[tuple[str, nn.Module]] = []
        channels = in_chans
        for name, v in zip(layer_names(cfg), cfg):
            if v == "M":
                layers.append((name, nn.MaxPool2d(2, stride=2)))
            elif isinstance(v, int):
                width = make_divisible(v * width_mult)
                layers.append((name, ConvNormAct(channels, width, 3, norm=norm, act=act, bias=conv_bias)))
                channels = width
            else:
                raise ModelError(f"vgg: a cfg entry is a number of channels or 'M' (a max pool), got {v!r}")
        self.features = nn.Sequential(OrderedDict(layers))
        self.num_features = make_divisible(HIDDEN * width_mult)
        self.num_classes = num_classes
        self.head = MlpHead(channels, self.num_features, num_classes, pool_size, drop_rate, act)
        init_weights_he(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def keras_layer_names(self) -> dict[str, str]:
        # Keras' Conv2D carries its ReLU, so "block1_conv1" names our conv and act both
        names = {}
        for name, layer in self.features.named_children():
            names.update({f"features.{name}.{child}": name for child in ("conv", "act")}
                         if isinstance(layer, ConvNormAct) else {f"features.{name}": name})
        return names | {"head.mlp.fc1": "fc1", "head.mlp.act1": "fc1", "head.mlp.fc2": "fc2",
                        "head.mlp.act2": "fc2", "head.fc": "predictions"}


def convert_torchvision_vgg(state_dict: dict, cfg: Sequence[Union[int, str]]) -> tuple[dict, dict]:
    """torchvision ``vgg*`` / ``vgg*_bn`` state dict -> ours. torchvision numbers every layer of its
    ``features`` list (conv, [bn], relu, pool), so walk ``cfg`` the way it built that list."""
    with_bn = "features.1.running_mean" in state_dict
    rules, index = [], 0
    for name, v in zip(layer_names(cfg), cfg):
        if v == "M":
            index += 1
            continue
        rules.append((rf"features\.{index}\.(weight|bias)", rf"features.{name}.conv.\1"))
        if with_bn:
            rules.append((rf"features\.{index + 1}\.(.+)", rf"features.{name}.norm.\1"))
        index += 3 if with_bn else 2
    rules += [
        (r"classifier\.0\.(.+)", r"head.mlp.fc1.\1"),
        (r"classifier\.3\.(.+)", r"head.mlp.fc2.\1"),
        (r"classifier\.6\.(.+)", r"head.fc.\1"),
    ]
    return rename_keys(state_dict, rules), {}


_PAPER = ("Simonyan & Zisserman 2014, Very Deep Convolutional Networks for Large-Scale Image "
          "Recognition, arXiv:1409.1556")
for _name, _cfg in [("vgg11", "A"), ("vgg13", "B"), ("vgg16", "D"), ("vgg19", "E")]:
    _layers = tuple(CFGS[_cfg])
    _convert = partial(convert_torchvision_vgg, cfg=_layers)
    register_model(_name, partial(VGG, cfg=_layers), family="vgg", paper=_PAPER,
                   convert_reference_weights=_convert)
    # torchvision's vgg*_bn keep the conv biases (redundant before BN); its parameter counts include them
    register_model(f"{_name}_bn", partial(VGG, cfg=_layers, norm="batch"), family="vgg",
                   paper=_PAPER + " (with batch norm, Ioffe & Szegedy 2015)",
                   convert_reference_weights=_convert)
