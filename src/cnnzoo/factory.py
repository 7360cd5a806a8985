"""``create_model``: a registered model by name, optionally with weights loaded into it.

It sits above both the registry (names -> builders) and the weight loaders, which is why it is a
module of its own: the registry must not import weight loading (that imports the checkpoint
format, which rebuilds models through the registry), and weight loading needs the registry.
"""
from __future__ import annotations

from typing import Any, Optional

from torch import nn

from cnnzoo.registry import check_model_args, get_model_info
from cnnzoo.weights import load_weights_into


def create_model(name: str, *, weights: Optional[str] = None, **overrides: Any) -> nn.Module:
    """Build a registered model. Overrides that are ``None`` are ignored, so a CLI flag left at its
    default never replaces the model's own default (as timm's ``create_model`` does).

    ``weights`` is a path to a state dict: one of ours (a ``cnnzoo train`` checkpoint or a plain
    state dict of this model) or one saved from torchvision's model of the same architecture.
    """
    info = get_model_info(name)
    args = {k: v for k, v in overrides.items() if v is not None}
    check_model_args(name, args)
    if weights is None:
        return info.builder(**args)
    return load_weights_into(info, args, weights)
