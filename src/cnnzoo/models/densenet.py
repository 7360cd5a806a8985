"""DenseNet-BC (Huang et al. 2016, "Densely Connected Convolutional Networks", arXiv:1608.06993):
dense blocks, in which every layer receives all earlier feature maps, joined by transitions that halve
the channels and the resolution (the paper's table 1)."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Optional, Sequence

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

from ._base import Classifier, conv_names, pick_layout
from ._convert import rename_keys

BN_SIZE = 4  # the bottleneck 1x1 conv makes bn_size * growth_rate channels
COMPRESSION = 0.5  # transitions keep this fraction of the channels (the "C" of DenseNet-BC)


@dataclass(frozen=True)
class Layout:
    """Where a DenseNet's reference differs from ours in what it computes (and so in which weights fit)."""
    norm_eps: Optional[float] = None  # None: PyTorch's 1e-5


# keras.applications.DenseNet121/169/201 are our network with batch norm's eps at 1.001e-5
LAYOUTS = {"torch": Layout(), "keras": Layout(norm_eps=1.001e-5)}


class DenseNet(Classifier):
    """DenseNet from ``(growth_rate, block_config, init_features)``: e.g. DenseNet-121 is
    ``(32, (6, 12, 24, 16), 64)``. ``width_mult`` scales the growth rate and the stem width.

    ``drop_rate`` is dropout before the classifier (torchvision's ``drop_rate`` is per dense layer instead).
    ``layout="keras"`` is Keras' network (see ``LAYOUTS``), the one its weight files fit.
    """

    def __init__(self, growth_rate: int = 32, block_config: Sequence[int] = (6, 12, 24, 16),
                 init_features: int = 64, num_classes: int = 1000, in_chans: int = 3, norm="batch",
                 act="relu", drop_rate: float = 0.0, conv_bias: bool = False, width_mult: float = 1.0,
                 layout: str = "torch"):
        super().__init__()
        self.layout, spec = layout, pick_layout(LAYOUTS, layout, "densenet")
        norm = get_norm_layer(norm, eps=spec.norm_eps)
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

    def keras_layer_names(self) -> dict[str, str]:
        names = conv_names("features.stem", "conv1_conv", "conv1_bn", "conv1_relu") | {"features.stem_pool": "pool1"}
        layer_children = {"norm1": "0_bn", "act1": "0_relu", "conv1": "1_conv", "norm2": "1_bn", "act2": "1_relu",
                          "conv2": "2_conv"}
        for name, module in self.features.named_children():
            if isinstance(module, DenseBlock):  # Keras' dense block i+1 is "conv{i+1}", transition i "pool{i+1}"
                stage = int(name.removeprefix("block")) + 1
                for j, layer in enumerate(module.layers, start=1):
                    names.update({f"features.{name}.layers.{layer}.{child}": f"conv{stage}_block{j}_{suffix}"
                                  for child, suffix in layer_children.items()})
                    # the block's concatenations, a row each in the summary: "cat", "cat_1", ...
                    names[f"features.{name}.cat" + (f"_{j - 1}" if j > 1 else "")] = f"conv{stage}_block{j}_concat"
            elif isinstance(module, Transition):
                stage = int(name.removeprefix("transition")) + 1
                names.update({f"features.{name}.{child}": f"pool{stage}_{child.replace('norm', 'bn')}"
                              for child in ("norm", "act", "conv", "pool")})
        return names | {"features.final_norm": "bn", "features.final_act": "relu", "head.pool": "avg_pool",
                        "head.fc": "predictions"}


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
