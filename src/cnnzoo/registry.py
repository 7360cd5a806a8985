"""One registry for every architecture: names -> builders, plus what a user needs to know about each.

Model files register their variants at the bottom with :func:`register_model`; everything else
(the CLI, training, comparison) resolves models only through :func:`cnnzoo.factory.create_model`,
so no part of the tool outside ``cnnzoo.models`` knows any architecture.

This module imports no model file: the models import it to register, and the package
(``cnnzoo/__init__.py``) imports ``cnnzoo.models``, so by the time anything can ask for a name
every family is here. That keeps the import graph a ladder (registry < models < factory) with no
circle through it.
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from torch import nn

from cnnzoo.errors import UserError


class ModelError(UserError, ValueError):
    """A user asked for a model or an argument that does not exist (the message says what does)."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., nn.Module]
    family: str
    paper: str
    input_size: tuple = (3, 224, 224)  # (channels, height, width) the model was designed for
    # Turns a state dict saved from the reference implementation (torchvision) into ours. Returns the
    # converted state dict and the constructor arguments the file implies (e.g. GoogLeNet's 3x3 branch).
    convert_reference_weights: Optional[Callable[[dict], tuple[dict, dict]]] = None
    defaults: dict = field(default_factory=dict)  # builder defaults, for display
    # What the model maps: "image" (classifies [N, C, H, W] images; input_size is (C, H, W)) or
    # "sequence" (a 1-D signal such as WaveNet's; input_size is (channels, samples)).
    task: str = "image"

    @property
    def arguments(self) -> list[str]:
        return list(_accepted_arguments(self.builder))


TASKS = ("image", "sequence")
_REGISTRY: dict[str, ModelInfo] = {}


def _accepted_arguments(builder: Callable) -> dict[str, inspect.Parameter]:
    params = inspect.signature(builder).parameters
    return {
        n: p for n, p in params.items()
        if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    }


def register_model(name: str, builder: Callable[..., nn.Module], *, family: str, paper: str,
                   input_size: tuple = (3, 224, 224),
                   convert_reference_weights: Optional[Callable] = None, task: str = "image") -> ModelInfo:
    """Register ``builder`` (a class or a ``functools.partial`` of one) under ``name``.

    Builders must expose their arguments in their signature (no bare ``**kwargs``) so that a
    misspelled override is caught here with a suggestion instead of deep inside a constructor.
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    params = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        raise TypeError(f"builder for {name!r} takes **kwargs; give it an explicit signature "
                        "(a class or a functools.partial of one) so overrides can be checked")
    defaults = {n: p.default for n, p in _accepted_arguments(builder).items()
                if p.default is not inspect.Parameter.empty}
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    info = ModelInfo(name, builder, family, paper, tuple(input_size), convert_reference_weights, defaults, task)
    _REGISTRY[name] = info
    return info


def list_models(pattern: Optional[str] = None, *, task: Optional[str] = None) -> list[str]:
    """Registered model names in natural order (resnet18 before resnet101); ``pattern`` is a
    shell-style wildcard such as ``'resnet*'``; ``task`` keeps only "image" or "sequence" models."""
    names = sorted((n for n, info in _REGISTRY.items() if task is None or info.task == task), key=_natural_key)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def get_model_info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}.{_suggest(name, _REGISTRY)} "
                         "Run `cnnzoo list` to see every model.") from None


def require_task(name: str, task: str, instead: str) -> ModelInfo:
    """``name``'s info, or a ``ModelError`` when it is a model of another task than ``task`` (WaveNet
    given to a command for image classifiers): ``instead`` says what the command does and where to
    go for this model."""
    info = get_model_info(name)
    if info.task != task:
        raise ModelError(f"{name!r} is a {info.task} model; {instead}")
    return info


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.5)
    return f" Did you mean {', '.join(map(repr, close))}?" if close else ""


def check_model_args(name: str, args: dict[str, Any]) -> None:
    """Raise :class:`ModelError` naming every argument ``name`` does not take."""
    accepted = get_model_info(name).arguments
    for arg in args:
        if arg not in accepted:
            raise ModelError(f"model {name!r} takes no argument {arg!r}.{_suggest(arg, accepted)} "
                             f"Its arguments: {', '.join(accepted)}.")


def parse_model_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``'resnet18:norm=group,width_mult=0.5'`` -> ``('resnet18', {'norm': 'group', 'width_mult': 0.5})``."""
    name, _, rest = spec.partition(":")
    args: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ModelError(f"cannot read {item!r} in model spec {spec!r}: write key=value, "
                             "e.g. 'resnet18:norm=group,drop_rate=0.2'")
        args[key.strip().replace("-", "_")] = parse_value(value.strip())
    return name.strip(), args


def parse_value(text: str) -> Any:
    """A command-line value as the Python value it spells: ints, floats, booleans, None, strings."""
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if "," in text:  # a tuple such as layers=2,2,2,2 (only reachable from --flag value form)
        return tuple(parse_value(t) for t in text.split(","))
    return text
