"""Loading weights into a registered model: torchvision's published weights by name (see
:mod:`cnnzoo.pretrained`), a ``cnnzoo train`` checkpoint, a plain state dict of ours, or a state dict
saved from torchvision's model of the same architecture (mapped onto our names).

The model may differ from the file in two ways, each said in one warning: another ``num_classes``
(the classifier starts afresh) and another ``in_chans`` (the first convolution is adapted).

Files are read with ``torch.load(..., weights_only=True)``: a state dict is data, never code.
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Any, Union

import torch
from torch import nn

from cnnzoo.checkpoint import Checkpoint, read_weights_file
from cnnzoo.models import Classifier
from cnnzoo.pretrained import resolve_weights_file
from cnnzoo.registry import ModelError, ModelInfo
from cnnzoo.weights_lightweight import reference_converter

READ_HINT = ("weights are read as data only (weights_only=True): a file that needs Python code to load is "
             "refused and its code never runs. Give a state dict (torch.save(model.state_dict(), path)) or a "
             "checkpoint written by `cnnzoo train`")


def load_weights(info: ModelInfo, args: dict[str, Any], weights: Union[str, os.PathLike], *,
                 progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Build ``info``'s model with ``args`` and load ``weights`` into it; returns the model and every
    constructor argument it was built with (what a checkpoint must store to rebuild it).

    ``weights``: "torchvision" / "imagenet" (the published file, from the hub cache or downloaded once)
    or a path. Arguments the file implies (its number of classes, a reference layout option such as
    GoogLeNet's 3x3 branch, a checkpoint's width) are used unless the user set them. A different
    ``num_classes`` than the file's loads everything except the classifier, which is re-initialised;
    a different ``in_chans`` adapts the first convolution (:func:`adapt_input_conv`). Each says so
    in a warning.
    """
    path = str(resolve_weights_file(weights, info.name, progress=progress))
    state, file_args = _read_state(info, path)
    if not _looks_like_ours(info, state, {**file_args, **args}):
        state, implied = _convert_reference(info, state, path)
        _check_conflicts(info.name, args, implied, path)
        file_args = {**file_args, **implied}
    model_args = {**file_args, **args}

    probe = _build(info, {**model_args, "num_classes": 1}, meta=True)
    head_prefix = _classifier_prefix(probe)
    file_classes = _num_classes_in(state, head_prefix)
    asked_classes = args.get("num_classes")
    model_args["num_classes"] = asked_classes if asked_classes is not None else file_classes
    reinit_head = asked_classes is not None and asked_classes != file_classes
    if reinit_head:
        state = {k: v for k, v in state.items() if not k.startswith(head_prefix)}
        warnings.warn(f"{path}: the file's classifier has {file_classes} classes; "
                      f"the head was re-initialised with {asked_classes} classes", stacklevel=4)
    state = _adapt_first_conv(probe, state, path)

    model = _build(info, model_args)
    _load_state(model, state, path, info.name, model_args, allow_missing=head_prefix if reinit_head else None)
    return model, model_args


def _read_state(info: ModelInfo, path: str) -> tuple[dict, dict]:
    """The state dict in ``path`` and the model arguments stored beside it (our checkpoints only)."""
    obj = read_weights_file(path, error=ModelError, hint=READ_HINT)
    if isinstance(obj, Checkpoint):
        if obj.model_name != info.name:
            raise ModelError(f"{path!r} is a checkpoint of {obj.model_name!r}, not of {info.name!r}; "
                             f"create {obj.model_name!r} to load it")
        state = obj.model_state
        file_args = {k: v for k, v in obj.model_args.items() if k in info.arguments}
    else:
        state, file_args = obj, {}
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelError(f"{path!r} does not hold a state dict (a mapping of parameter names to tensors); "
                         "save one with torch.save(model.state_dict(), path)")
    return state, file_args


def _build(info: ModelInfo, args: dict, meta: bool = False) -> nn.Module:
    if meta:  # only the structure (names, shapes) is needed: no memory, no initialisation cost
        with torch.device("meta"):
            return info.builder(**args)
    return info.builder(**args)


def _looks_like_ours(info: ModelInfo, state: dict, args: dict) -> bool:
    """True when most of the file's keys are names in our model (so no conversion is needed)."""
    ours = set(_build(info, {**args, "num_classes": 1}, meta=True).state_dict())
    return sum(k in ours for k in state) > len(state) / 2


def _convert_reference(info: ModelInfo, state: dict, path: str) -> tuple[dict, dict]:
    """``state`` (a reference implementation's) in our names, and the arguments it implies: the
    model's own converter (registered with it), else the lightweight families' (torchvision's, or
    the EfficientNet-PyTorch port's for a file in its layout)."""
    example = next(iter(state))
    convert = info.convert_reference_weights or reference_converter(info.name, state)
    if convert is None:
        raise ModelError(f"{path!r} is not a state dict of {info.name!r} (its key {example!r} is not one "
                         f"of ours) and {info.name!r} has no reference weights to map from")
    try:
        return convert(state)
    except (KeyError, ValueError, IndexError) as exc:
        where = f"cannot place key {exc.args[0]!r}" if isinstance(exc, KeyError) else f"first key {example!r}"
        raise ModelError(f"{path!r} is neither a state dict of our {info.name!r} nor of torchvision's "
                         f"({where}); is it a different architecture?") from None


def _check_conflicts(name: str, args: dict, implied: dict, path: str) -> None:
    for key, needed in implied.items():
        if key in args and args[key] != needed:
            raise ModelError(f"{path!r} holds torchvision's {name} weights, which need {key}={needed!r}; "
                             f"you asked for {key}={args[key]!r}. Leave {key} unset to load this file.")


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A first-convolution kernel ``[out, C, kh, kw]`` for ``in_chans`` input channels instead of C
    (timm's ``adapt_input_conv``, generalised from C = 3). One channel: the sum of the C kernels, so
    a grey image gives what the C-channel model gives on that image copied into every channel. More
    or fewer: the C kernels repeated cyclically (R, G, B, R, ...) and scaled by C / in_chans, which
    keeps the activations' scale (and, for a multiple of C, gives what the C-channel model gives on
    an image whose channels repeat its own, e.g. RGB RGB)."""
    original = weight.shape[1]
    if in_chans == original:
        return weight
    w = weight.float()
    if in_chans == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        w = w.repeat(1, math.ceil(in_chans / original), 1, 1)[:, :in_chans] * (original / in_chans)
    return w.to(weight.dtype).contiguous()


def _adapt_first_conv(probe: nn.Module, state: dict, path: str) -> dict:
    """The state with its first convolution adapted to the model's input channels, when they differ."""
    name, conv = next(((n, m) for n, m in probe.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
    key = f"{name}.weight"
    weight = state.get(key)
    if conv is None or weight is None or weight.ndim != 4 or weight.shape[1] == conv.in_channels or conv.groups != 1:
        return state
    how = "by summing its kernels" if conv.in_channels == 1 else "by repeating its kernels cyclically, rescaled"
    warnings.warn(f"{path}: the first convolution ({name}) takes {weight.shape[1]} input channels; adapted to "
                  f"{conv.in_channels} {how}", stacklevel=5)
    return {**state, key: adapt_input_conv(weight, conv.in_channels)}


def _classifier_prefix(model: nn.Module) -> str:
    if not isinstance(model, Classifier):
        raise ModelError(f"{type(model).__name__} has no classifier head (get_classifier()): weight files load "
                         "into the image classifiers; a sequence model is continued from its checkpoint (--resume)")
    classifier = model.get_classifier()
    return next(n for n, m in model.named_modules() if m is classifier) + "."


def _num_classes_in(state: dict, head_prefix: str) -> int:
    weight = state.get(head_prefix + "weight")
    return 0 if weight is None else int(weight.shape[0])  # no classifier: a feature extractor


def _load_state(model: nn.Module, state: dict, path: str, name: str, args: dict,
                allow_missing: str | None) -> None:
    """``load_state_dict`` with messages a user can act on.

    Sub-modules a model declares optional (GoogLeNet's auxiliary heads) may be absent on either side:
    extra ones in the file are dropped (as torchvision does), missing ones keep their initialisation.
    """
    optional = tuple(getattr(model, "optional_state_prefixes", ()))
    own = model.state_dict()
    # optional sub-modules the model lacks, or whose shapes differ (an aux classifier for another
    # number of classes), are left to their fresh initialisation
    state = {k: v for k, v in state.items()
             if not k.startswith(optional) or (k in own and own[k].shape == v.shape)} if optional else state
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        sizes = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line][:3]
        raise ModelError(f"{path!r} does not fit {name} built with {args}: {'; '.join(sizes) or exc}. "
                         "Is it another architecture? If not, build the model with the arguments the "
                         "weights were trained with (e.g. the same width_mult).") from None
    missing = [k for k in result.missing_keys
               if not k.endswith("num_batches_tracked") and not (allow_missing and k.startswith(allow_missing))]
    fresh_optional = [k for k in missing if k.startswith(optional)] if optional else []
    missing = [k for k in missing if k not in fresh_optional]
    if missing or result.unexpected_keys:
        raise ModelError(f"{path!r} does not match {name} built with {args}: "
                         f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
                         f"unexpected {result.unexpected_keys[:4]}"
                         f"{'...' if len(result.unexpected_keys) > 4 else ''}")
    if fresh_optional:
        modules = sorted({k.rsplit(".", 1)[0] for k in fresh_optional})
        warnings.warn(f"{path!r} has no fitting weights for {', '.join(modules)}; "
                      "they keep their fresh initialisation", stacklevel=5)
