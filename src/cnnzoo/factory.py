"""``create_model``: a registered model by name, optionally with weights loaded into it.

It sits above both the registry (names -> builders) and the weight loaders, which is why it is a
module of its own: the registry must not import weight loading (that imports the checkpoint
format, which rebuilds models through the registry), and weight loading needs the registry.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Union

from torch import nn

from cnnzoo.keras_weights import load_keras_weights_with_args
from cnnzoo.pretrained import is_keras_weights
from cnnzoo.registry import check_model_args, get_model_info
from cnnzoo.weights import load_weights

Weights = Optional[Union[str, os.PathLike]]


def create_model(name: str, *, weights: Weights = None, progress: bool = True, **overrides: Any) -> nn.Module:
    """Build a registered model. Overrides that are ``None`` are ignored, so a CLI flag left at its
    default never replaces the model's own default (as timm's ``create_model`` does).

    ``weights``: ``"torchvision"`` (alias ``"imagenet"``) for torchvision's published ImageNet weights
    of this architecture (from the torch hub cache, downloaded there once if missing; ``progress``
    shows the download; EfficientNet-Lite0..2: the ``lite-weights`` packages'), ``"keras"`` (any case)
    for the file ``keras.applications`` publishes, or a path: a Keras file (``.h5``, the model then
    built with ``layout="keras"``, read from the file) or a state dict, one of ours (a ``cnnzoo train``
    checkpoint or a plain state dict of this model) or one saved from torchvision's model of the
    same architecture (or the EfficientNet-PyTorch port's, for EfficientNet).
    Another ``num_classes`` than the weights' starts a fresh classifier, another ``in_chans`` adapts
    the first convolution; each says so in a warning.
    """
    return _create(name, weights, progress, overrides)[0]


def create_model_with_args(name: str, *, weights: Weights = None, progress: bool = True,
                           **overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`create_model`, plus every constructor argument the model was built with: the overrides
    and what the weights imply (their class count, GoogLeNet's torchvision layout, a checkpoint's
    width...). A checkpoint must store these, not just the overrides, to rebuild the model."""
    return _create(name, weights, progress, overrides)


def _create(name: str, weights: Weights, progress: bool, overrides: dict) -> tuple[nn.Module, dict[str, Any]]:
    info = get_model_info(name)
    args = {k: v for k, v in overrides.items() if v is not None}
    check_model_args(name, args)
    if weights is None:
        return info.builder(**args), args
    if is_keras_weights(weights):
        num_classes = args.pop("num_classes", None)
        model, _, model_args = load_keras_weights_with_args(weights, name, num_classes, progress=progress, **args)
        return model, model_args
    return load_weights(info, args, weights, progress=progress)
