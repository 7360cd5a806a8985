"""The two classifier heads of the lightweight families that are not a single linear layer."""
from __future__ import annotations

import torch
from torch import nn

from .heads import Head, _linear
from .helpers import make_act


class HiddenLayerHead(Head):
    """MobileNetV3's head (Howard et al. 2019, figure 5): global average pool -> linear ``hidden``
    (1280 wide in Large) -> activation -> dropout -> linear ``fc``.

    The hidden layer works on the pooled 1x1 map (the paper's "efficient last stage" moved it past
    the pooling), so it is a linear layer; ``pre_logits`` returns its activated output, as timm does.
    """

    def __init__(self, in_features: int, hidden: int, num_classes: int, drop_rate: float = 0.2,
                 act="hardswish"):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Linear(in_features, hidden)
        self.act = make_act(act)
        self.drop = nn.Dropout(drop_rate)
        self.fc = _linear(hidden, num_classes)
        self.hidden_features = hidden

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.act(self.hidden(torch.flatten(self.pool(x), 1)))
        return x if pre_logits else self.fc(self.drop(x))

    def reset(self, num_classes: int) -> None:
        self.fc = _linear(self.hidden_features, num_classes)


def _classifier_conv(in_channels: int, num_classes: int) -> nn.Module:
    if num_classes <= 0:
        return nn.Identity()
    fc = nn.Conv2d(in_channels, num_classes, 1, bias=True)
    nn.init.normal_(fc.weight, 0, 0.01)  # SqueezeNet's (torchvision's) initialisation of this layer
    nn.init.zeros_(fc.get_parameter("bias"))  # fc.bias is Optional (bias=False has none); this one has it
    return fc


class ConvClassifierHead(Head):
    """SqueezeNet's head (Iandola et al. 2016, section 3.3): dropout -> 1x1 convolution ``fc`` to one
    map per class -> ReLU -> global average pool. The ReLU sits before the pooling, so this is not a
    linear layer on pooled features; ``pre_logits`` returns the pooled features (``in_channels``)."""

    def __init__(self, in_channels: int, num_classes: int, drop_rate: float = 0.5, act="relu"):
        super().__init__()
        self.drop = nn.Dropout(drop_rate)
        self.fc = _classifier_conv(in_channels, num_classes)
        self.act = make_act(act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.in_features = in_channels

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits or isinstance(self.fc, nn.Identity):
            return torch.flatten(self.pool(x), 1)
        return torch.flatten(self.pool(self.act(self.fc(self.drop(x)))), 1)

    def reset(self, num_classes: int) -> None:
        self.fc = _classifier_conv(self.in_features, num_classes)
