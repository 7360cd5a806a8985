"""Classifier heads: what turns a feature map into logits. Every model's ``head`` is one of these."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .helpers import make_act


def _linear(in_features: int, num_classes: int) -> nn.Module:
    # num_classes=0 leaves the head as a feature extractor (timm's convention).
    if num_classes <= 0:
        return nn.Identity()
    fc = nn.Linear(in_features, num_classes)
    nn.init.normal_(fc.weight, 0, 0.01)
    nn.init.zeros_(fc.bias)
    return fc


class Head(nn.Module):
    """What every head has: ``forward(x, pre_logits=False)``, the final layer ``fc`` (an Identity when
    there are no classes), and ``reset(num_classes)``, which replaces ``fc``."""

    fc: nn.Module

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def reset(self, num_classes: int) -> None:
        raise NotImplementedError


class ClassifierHead(Head):
    """Global average pool -> flatten -> dropout -> linear ``fc``."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = _linear(in_features, num_classes)
        self.in_features = in_features

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.pool(x), 1)
        return x if pre_logits else self.fc(self.drop(x))

    def reset(self, num_classes: int) -> None:
        self.fc = _linear(self.in_features, num_classes)


class MlpHead(Head):
    """VGG's head: adaptive pool to ``pool_size`` -> flatten -> (fc, act, dropout) x 2 -> ``fc``.

    ``forward(x, pre_logits=True)`` returns the last hidden vector (4096 wide in VGG), as timm does.
    """

    def __init__(self, in_channels: int, hidden: int, num_classes: int, pool_size: int = 7,
                 drop_rate: float = 0.5, act="relu"):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.mlp = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(in_channels * pool_size * pool_size, hidden)),
            ("act1", make_act(act)), ("drop1", nn.Dropout(drop_rate)),
            ("fc2", nn.Linear(hidden, hidden)),
            ("act2", make_act(act)), ("drop2", nn.Dropout(drop_rate)),
        ]))
        self.fc = _linear(hidden, num_classes)
        self.hidden = hidden

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.mlp(torch.flatten(self.pool(x), 1))
        return x if pre_logits else self.fc(x)

    def reset(self, num_classes: int) -> None:
        self.fc = _linear(self.hidden, num_classes)
