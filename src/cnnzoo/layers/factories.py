"""Normalisation and activation layers by name, so any model can swap them with one argument.

Batch norm estimates statistics over the batch and weakens when batches are small; layer, instance
and group norm normalise each sample on its own and work at batch size 1 (see the study notes).
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Optional, Protocol, Union

from torch import nn

NormLayer = Callable[[int], nn.Module]  # num_channels -> module
ActLayer = Callable[[], nn.Module]


class NamedNorm(Protocol):
    """A norm of the table below: ``num_channels -> module``, with the epsilon as an option."""

    def __call__(self, num_channels: int, /, *, eps: float = ...) -> nn.Module: ...


def _layer_norm_2d(num_channels: int, eps: float = 1e-5) -> nn.Module:
    # LayerNorm over (C, H, W) of each sample, with a per-channel scale and shift: GroupNorm with one group.
    return nn.GroupNorm(1, num_channels, eps=eps)


def _instance_norm_2d(num_channels: int, eps: float = 1e-5) -> nn.Module:
    # Each channel of each sample normalised over (H, W). GroupNorm with one group per channel computes
    # exactly that and, unlike nn.InstanceNorm2d, has the per-channel affine parameters by default.
    # Neither can normalise a 1x1 map of a single sample (one value has no spread): keep inputs large
    # enough that the last feature map is at least 2x2 when training with instance norm at batch size 1.
    return nn.GroupNorm(num_channels, num_channels, eps=eps)


def _group_norm_2d(num_channels: int, groups: int = 32, eps: float = 1e-5) -> nn.Module:
    # 32 groups as in Wu & He (2018), fewer when the channel count is not divisible by 32.
    return nn.GroupNorm(math.gcd(groups, num_channels), num_channels, eps=eps)


NORM_LAYERS: dict[str, NamedNorm] = {
    "batch": nn.BatchNorm2d,
    "layer": _layer_norm_2d,
    "instance": _instance_norm_2d,
    "group": _group_norm_2d,
}

ACT_LAYERS: dict[str, ActLayer] = {
    "relu": partial(nn.ReLU, inplace=True),
    "relu6": partial(nn.ReLU6, inplace=True),
    "leaky_relu": partial(nn.LeakyReLU, 0.1, inplace=True),
    "elu": partial(nn.ELU, inplace=True),
    "gelu": nn.GELU,
    "silu": partial(nn.SiLU, inplace=True),
    "swish": partial(nn.SiLU, inplace=True),
    "hardswish": partial(nn.Hardswish, inplace=True),
    # a squeeze-excitation gate on a [N, C, 1, 1] map: nothing to save by working in place
    "hardsigmoid": nn.Hardsigmoid,
    "mish": partial(nn.Mish, inplace=True),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}

NORM_NAMES = (*NORM_LAYERS, "none")
ACT_NAMES = (*ACT_LAYERS, "none")


def get_norm_layer(norm: Union[str, NormLayer, None], eps: Optional[float] = None) -> NormLayer | None:
    """``'batch' | 'layer' | 'instance' | 'group' | 'none'`` (or a callable) -> ``num_channels -> module``.

    Returns ``None`` for ``'none'`` so callers can leave the layer out instead of adding an Identity.
    ``eps`` (for the named norms) replaces PyTorch's 1e-5, e.g. 1e-3 to match a reference's weights.
    """
    if norm is None or norm == "none":
        return None
    if callable(norm):
        return norm
    try:
        layer = NORM_LAYERS[norm]
    except KeyError:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORM_NAMES)}") from None
    return layer if eps is None else partial(layer, eps=eps)


def get_act_layer(act: Union[str, ActLayer, None]) -> ActLayer | None:
    """``'relu' | 'relu6' | ... | 'none'`` (or a callable) -> a no-argument module factory, or ``None``."""
    if act is None or act == "none":
        return None
    if callable(act):
        return act
    try:
        return ACT_LAYERS[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; choose one of {', '.join(ACT_NAMES)}") from None
