"""GoogLeNet / Inception v1 (Szegedy et al. 2014, "Going Deeper with Convolutions", arXiv:1409.4842).

A stem of plain convolutions, nine Inception blocks (the paper's table 1) with max-pools between
stages, global average pooling, dropout and a linear classifier; optionally two auxiliary
classifiers on inception4a and inception4d used only in training.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from functools import partial
from typing import Callable

import torch
from torch import nn

from cnnzoo.layers import ClassifierHead, ConvNormAct, InceptionBlock, get_norm_layer, init_weights_he, make_divisible
from cnnzoo.layers.helpers import make_act
from cnnzoo.registry import register_model

from ._base import Classifier
from ._convert import Rule, rename_keys

# Table 1: name -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); "pool" is a stride-2 max-pool.
BODY = (
    ("inception3a", (64, 96, 128, 16, 32, 32)),
    ("inception3b", (128, 128, 192, 32, 96, 64)),
    ("pool3", 3),
    ("inception4a", (192, 96, 208, 16, 48, 64)),
    ("inception4b", (160, 112, 224, 24, 64, 64)),
    ("inception4c", (128, 128, 256, 24, 64, 64)),
    ("inception4d", (112, 144, 288, 32, 64, 64)),
    ("inception4e", (256, 160, 320, 32, 128, 128)),
    # The paper pools 3x3/2 here; torchvision 2x2/2. Same output size at 224 and no parameters,
    # so one choice serves both layouts (torchvision's, for weight parity).
    ("pool4", 2),
    ("inception5a", (256, 160, 320, 32, 128, 128)),
    ("inception5b", (384, 192, 384, 48, 128, 128)),
)
AUX_TAPS = ("inception4a", "inception4d")  # where the auxiliary classifiers branch off


class AuxHead(nn.Module):
    """Auxiliary classifier (paper section 5): pool to 4x4, 1x1 conv to 128, fc 1024, dropout 0.7, fc."""

    def __init__(self, in_channels: int, num_classes: int, conv: dict, width_mult: float = 1.0):
        super().__init__()
        width, hidden = make_divisible(128 * width_mult), make_divisible(1024 * width_mult)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.conv = ConvNormAct(in_channels, width, 1, **conv)
        self.fc1 = nn.Linear(width * 16, hidden)
        self.act = make_act(conv["act"])
        self.drop = nn.Dropout(0.7)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc(self.drop(self.act(self.fc1(x))))


class GoogLeNet(Classifier):
    """GoogLeNet. ``large_branch_kernel=5`` is the paper; 3 is torchvision's layout (its pretrained
    weights use 3x3 there). ``norm_eps`` is the normalisation epsilon (torchvision's weights: 1e-3).

    Batch norm is not in the paper (it came later, Ioffe & Szegedy 2015) but is the default here, as in
    torchvision; ``norm="none", conv_bias=True`` gives the paper's network without LRN. Dropout 0.4
    before the classifier is the paper's (torchvision uses 0.2).

    With ``aux_logits=True``, ``forward`` still returns only the main logits; ``forward_train``
    returns ``(logits, [aux1, aux2])`` in training mode, for a loss of main + 0.3 x each auxiliary.
    """

    optional_state_prefixes = ("aux1.", "aux2.")  # weights files may or may not carry the aux heads

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, norm="batch", act="relu",
                 drop_rate: float = 0.4, conv_bias: bool = False, width_mult: float = 1.0,
                 large_branch_kernel: int = 5, aux_logits: bool = False, norm_eps: float = 1e-5):
        super().__init__()
        conv = dict(norm=get_norm_layer(norm, eps=norm_eps), act=act, bias=conv_bias)
        ch = partial(_scaled, width_mult=width_mult)
        self.stem = nn.Sequential(OrderedDict(
            conv1=ConvNormAct(in_chans, ch(64), 7, 2, **conv),
            pool1=nn.MaxPool2d(3, stride=2, ceil_mode=True),
            conv2=ConvNormAct(ch(64), ch(64), 1, **conv),
            conv3=ConvNormAct(ch(64), ch(192), 3, **conv),
            pool2=nn.MaxPool2d(3, stride=2, ceil_mode=True),
        ))
        layers: list[tuple[str, nn.Module]] = []
        channels, aux_inputs = ch(192), []
        for name, spec in BODY:
            if isinstance(spec, int):  # a stride-2 max-pool of this kernel
                layers.append((name, nn.MaxPool2d(spec, stride=2, ceil_mode=True)))
                continue
            c1x1, c3x3_reduce, c3x3, c5x5_reduce, c5x5, pool_proj = map(ch, spec)
            block = InceptionBlock(channels, c1x1, c3x3_reduce, c3x3, c5x5_reduce, c5x5, pool_proj,
                                   large_kernel=large_branch_kernel, **conv)
            layers.append((name, block))
            channels = block.out_channels
            if name in AUX_TAPS:
                aux_inputs.append(channels)
        self.blocks = nn.Sequential(OrderedDict(layers))
        self.aux_logits = aux_logits
        if aux_logits:
            self.aux1 = AuxHead(aux_inputs[0], num_classes, conv, width_mult)
            self.aux2 = AuxHead(aux_inputs[1], num_classes, conv, width_mult)
        self.num_features, self.num_classes = channels, num_classes
        self.head = ClassifierHead(channels, num_classes, drop_rate)
        init_weights_he(self)

    def _features_and_aux(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        aux: list[torch.Tensor] = []
        x = self.stem(x)
        for name, layer in self.blocks.named_children():
            x = layer(x)
            if with_aux and name in AUX_TAPS:
                aux.append(getattr(self, f"aux{len(aux) + 1}")(x))
        return x, aux

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._features_and_aux(x, with_aux=False)[0]

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(logits, [aux1_logits, aux2_logits])``; the list is empty when the aux heads are off or
        the model is in eval mode."""
        features, aux = self._features_and_aux(x, with_aux=self.aux_logits and self.training)
        return self.forward_head(features), aux

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        for aux in (getattr(self, "aux1", None), getattr(self, "aux2", None)):
            if aux is not None:
                aux.fc = nn.Linear(aux.fc.in_features, num_classes)


def _scaled(channels: int, width_mult: float) -> int:
    return make_divisible(channels * width_mult)


def convert_torchvision_googlenet(state_dict: dict) -> tuple[dict, dict]:
    """torchvision ``googlenet`` state dict -> ours. Its file implies its layout: 3x3 convolutions in the
    "5x5" branch and batch-norm epsilon 1e-3 (its ``BasicConv2d``).

    Note: torchvision's ImageNet weights were trained with ``transform_input=True`` (inputs re-scaled
    from ImageNet normalisation to [-1, 1]); feed such inputs normalised with mean=std=0.5.
    """
    def basic_conv(prefix: Callable[[re.Match], str]) -> Callable[[re.Match], str]:
        # torchvision's BasicConv2d (conv, bn) is our ConvNormAct (conv, norm)
        return lambda m: f"{prefix(m)}.{'norm' if m['kind'] == 'bn' else 'conv'}.{m['rest']}"

    tail = r"\.(?P<kind>conv|bn)\.(?P<rest>.+)"
    branch_parts = {"2.0": "2.reduce", "2.1": "2.conv", "3.0": "3.reduce", "3.1": "3.conv", "4.1": "4.proj"}
    rules: list[Rule] = [
        (rf"conv(?P<i>[123]){tail}", basic_conv(lambda m: f"stem.conv{m['i']}")),
        (rf"(?P<block>inception\w+)\.branch1{tail}", basic_conv(lambda m: f"blocks.{m['block']}.branch1")),
        (rf"(?P<block>inception\w+)\.branch(?P<b>\d\.\d){tail}",
         basic_conv(lambda m: f"blocks.{m['block']}.branch{branch_parts[m['b']]}")),
        (rf"(?P<aux>aux[12])\.conv{tail}", basic_conv(lambda m: f"{m['aux']}.conv")),
        (r"(aux[12])\.fc1\.(.+)", r"\1.fc1.\2"),
        (r"(aux[12])\.fc2\.(.+)", r"\1.fc.\2"),
        (r"fc\.(.+)", r"head.fc.\1"),
    ]
    return rename_keys(state_dict, rules), {"large_branch_kernel": 3, "norm_eps": 1e-3}


register_model("googlenet", partial(GoogLeNet), family="googlenet",
               paper="Szegedy et al. 2014, Going Deeper with Convolutions, arXiv:1409.4842",
               input_size=(3, 224, 224), convert_reference_weights=convert_torchvision_googlenet)
