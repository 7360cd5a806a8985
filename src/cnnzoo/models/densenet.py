"""DenseNet-BC (Huang et al. 2016, "Densely Connected Convolutional Networks", arXiv:1608.06993):
dense blocks, in which every layer receives all earlier feature maps, joined by transitions that halve
the channels and the resolution (the paper's table 1)."""
from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Sequence

import torch
from torch import nn

from cnnzoo.layers import (
    ClassifierHead,
    ConvNormAct,
    DenseBlock,
    Transition,
    get_norm_layer,
    init_weights_he,
    make_divisible,
)
from cnnzoo.layers.helpers import make_act
from cnnzoo.registry import register_model

from ._base import Classifier
from ._convert import rename_keys

BN_SIZE = 4  # the bottleneck 1x1 conv makes bn_size * growth_rate channels
COMPRESSION = 0.5  # transitions keep this fraction of the channels (the "C" of DenseNet-BC)


class DenseNet(Classifier):
    """DenseNet from ``(growth_rate, block_config, init_features)``: e.g. DenseNet-121 is
    ``(32, (6, 12, 24, 16), 64)``. ``width_mult`` scales the growth rate and the stem width.

    ``drop_rate`` is dropout before the classifier (torchvision's ``drop_rate`` is per dense layer instead).
    """

    def __init__(self, growth_rate: int = 32, block_config: Sequence[int] = (6, 12, 24, 16),
                 init_features: int = 64, num_classes: int = 1000, in_chans: int = 3, norm="batch",
                 act="relu", drop_rate: float = 0.0, conv_bias: bool = False, width_mult: float = 1.0):
        super().__init__()
        growth_rate = make_divisible(growth_rate * width_mult)
        channels = make_divisible(init_features * width_mult)
        conv = dict(norm=norm, act=act, bias=conv_bias)
        layers = [("stem", ConvNormAct(in_chans, channels, 7, 2, **conv)),
                  ("stem_pool", nn.MaxPool2d(3, stride=2, padding=1))]
        for i, num_layers in enumerate(block_config, start=1):
            block = DenseBlock(num_layers, channels, growth_rate, BN_SIZE, **conv)
            layers.append((f"block{i}", block))
            channels = block.out_channels
            if i < len(block_config):
                transition = Transition(channels, int(channels * COMPRESSION), **conv)
                layers.append((f"transition{i}", transition))
                channels = transition.out_channels
        norm_layer = get_norm_layer(norm)
        if norm_layer:  # the blocks are pre-activation, so the last one's output still needs norm + act
            layers.append(("final_norm", norm_layer(channels)))
        layers.append(("final_act", make_act(act)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.num_features, self.num_classes = channels, num_classes
        self.head = ClassifierHead(channels, num_classes, drop_rate)
        init_weights_he(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def convert_torchvision_densenet(state_dict: dict) -> tuple[dict, dict]:
    """torchvision ``densenet*`` state dict -> ours. Older torchvision files wrote ``norm.1`` for
    ``norm1`` (the reason torchvision's own loader has a regex); both are accepted."""
    rules = [
        (r"features\.conv0\.(.+)", r"features.stem.conv.\1"),
        (r"features\.norm0\.(.+)", r"features.stem.norm.\1"),
        (r"features\.denseblock(\d)\.denselayer(\d+)\.(norm|conv)\.?([12])\.(.+)",
         r"features.block\1.layers.layer\2.\3\4.\5"),
        (r"features\.transition(\d)\.(norm|conv)\.(.+)", r"features.transition\1.\2.\3"),
        (r"features\.norm5\.(.+)", r"features.final_norm.\1"),
        (r"classifier\.(.+)", r"head.fc.\1"),
    ]
    return rename_keys(state_dict, rules), {}


_PAPER = "Huang et al. 2016, Densely Connected Convolutional Networks, arXiv:1608.06993"
for _name, _growth, _blocks, _init in [
    ("densenet121", 32, (6, 12, 24, 16), 64),
    ("densenet161", 48, (6, 12, 36, 24), 96),
    ("densenet169", 32, (6, 12, 32, 32), 64),
    ("densenet201", 32, (6, 12, 48, 32), 64),
]:
    register_model(_name, partial(DenseNet, growth_rate=_growth, block_config=_blocks, init_features=_init),
                   family="densenet", paper=_PAPER, input_size=(3, 224, 224),
                   convert_reference_weights=convert_torchvision_densenet)
