"""Arguments shared by several subcommands: model overrides, input sizes, number lists."""
from __future__ import annotations

import argparse
import typing
from typing import Any

from cnnzoo.devices import DEVICES
from cnnzoo.errors import UserError
from cnnzoo.layers.factories import ACT_NAMES, NORM_NAMES
from cnnzoo.registry import parse_value
from cnnzoo.training.config import TrainConfig, training_options

# The overrides most models take, as (argument name, argparse options): the flags and the names
# model_overrides reads both come from here. Others pass through as ``--name value`` (see the CLI docstring).
MODEL_ARGUMENTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("num_classes", dict(type=int, help="number of output classes")),
    ("in_chans", dict(type=int, help="input channels")),
    ("width_mult", dict(type=float, help="width multiplier (alpha) where the family has one")),
    ("norm", dict(choices=NORM_NAMES, help="normalisation layer")),
    ("act", dict(choices=ACT_NAMES, help="activation")),
    ("drop_rate", dict(type=float, help="dropout before the classifier")),
    ("conv_bias", dict(action=argparse.BooleanOptionalAction, default=None, help="give convolutions a bias")),
    ("layout", dict(choices=("torch", "keras"), help="build as PyTorch's reference does (torch) or as "
                    "keras.applications does (keras: its padding, eps and biases; the layout Keras' weights "
                    "fit, chosen by itself with --weights keras or a .h5 file)")),
)
MODEL_ARGUMENT_NAMES = tuple(name for name, _ in MODEL_ARGUMENTS)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The overrides most models take (:data:`MODEL_ARGUMENTS`)."""
    g = parser.add_argument_group("model overrides (left unset, each model keeps its own default; "
                                  "any other constructor argument can be given as --name value)")
    for name, options in MODEL_ARGUMENTS:
        g.add_argument("--" + name.replace("_", "-"), **options)


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model arguments a user set on the command line (unset ones are left out)."""
    found = {k: getattr(args, k) for k in MODEL_ARGUMENT_NAMES if getattr(args, k, None) is not None}
    found.update(getattr(args, "extra_model_args", {}) or {})
    return found


def overrides_from_extra_args(extra: list[str]) -> dict[str, Any]:
    """``['--growth-rate', '12', '--aux-logits']`` -> ``{'growth_rate': 12, 'aux_logits': True}``."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--") or len(token) < 3:
            raise UserError(f"unrecognized argument {token!r}")
        key, sep, value = token[2:].partition("=")
        if not sep:
            if i + 1 < len(extra) and not extra[i + 1].startswith("--"):
                value, i = extra[i + 1], i + 1
            else:
                value = "true"  # a bare flag such as --aux-logits
        out[key.replace("-", "_")] = parse_value(value)
        i += 1
    return out


def add_generation_arguments(parser: argparse.ArgumentParser, output: str) -> None:
    """What `generate` and `forecast` share: sampling seed, conditioning, the plot, device and threads."""
    parser.add_argument("--seed", type=int, default=0, help="random seed of the sampling (default 0)")
    parser.add_argument("--condition", help="for a conditioned model: the id to generate for, or the name of a "
                                            "folder it was trained on with --condition-on-folders")
    parser.add_argument("--no-plot", action="store_true", help=f"write the {output} only")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1: one step is too small to share between threads)")


def int_list(text: str) -> list[int]:
    """'1,32' -> [1, 32] (an argparse type)."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def float_list(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def input_size(text: str) -> tuple[int, int, int]:
    """'3,224,224' or '224' -> (3, 224, 224)."""
    values = int_list(text)
    if len(values) == 1:
        values = [3, values[0], values[0]]
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W (e.g. 3,224,224) or one size, got {text!r}")
    return values[0], values[1], values[2]


def add_training_options(parser: argparse.ArgumentParser, command: str, *,
                         exclusive: tuple[str, ...] = (), only: tuple[str, ...] = ()) -> None:
    """Every :class:`~cnnzoo.training.TrainConfig` option that ``command`` ("train" or "compare")
    offers, derived from the field's declaration: flag, type, choices, help and default all come from
    there, so an option is added to both commands in one edit. ``exclusive`` names options of which
    at most one may be given (compare: --epochs or --time-budget). ``only``: just these options
    (a command that uses a few of training's settings, as lr-find).

    Defaults are left out of the namespace (``argparse.SUPPRESS``): :func:`training_options_from_args`
    then returns exactly what the user typed, and everything else keeps training's own default.
    """
    hints = typing.get_type_hints(TrainConfig)
    groups = {"training": parser.add_argument_group("training (unset: the default for this data and model)"),
              "data": parser.add_argument_group("data (CSV label lists and Parquet sets)"),
              "fine-tuning": parser.add_argument_group("fine-tuning from pretrained weights"),
              "sequences": parser.add_argument_group("sequence models (WaveNet on audio or CSV series)"),
              "distributed": parser.add_argument_group("several processes (under torchrun; "
                                                       "detected, no flag needed)"),
              "output": parser.add_argument_group("output")}
    exclusive_group = groups["training"].add_mutually_exclusive_group() if exclusive else None
    for f in training_options(command):
        if only and f.name not in only:
            continue
        meta = f.metadata["option"]
        target = exclusive_group if exclusive_group is not None and f.name in exclusive else groups[meta["group"]]
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        value_type = _base_type(hints[f.name])
        if value_type is bool:
            kwargs["action"] = "store_true" if f.default is False else argparse.BooleanOptionalAction
        else:
            kwargs.update(type=value_type, choices=meta["choices"], metavar=meta["metavar"])
            if meta["optional_value"] is not None:  # `--tensorboard` alone, or `--tensorboard DIR`
                kwargs.update(nargs="?", const=meta["optional_value"])
            if meta["cli_unit"]:
                kwargs["metavar"] = meta["cli_unit"][0]
        unset = f.default is None or f.default is False or "default" in meta["help"]
        shown_default = "" if unset else f" (default: {f.default})"
        target.add_argument(flag, help=meta["help"] + shown_default, **kwargs)


def training_options_from_args(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The training options the user gave on the command line, in TrainConfig's units."""
    found = {}
    for f in training_options(command):
        if hasattr(args, f.name):
            unit = f.metadata["option"]["cli_unit"]
            value = getattr(args, f.name)
            found[f.name] = value * unit[1] if unit and value is not None else value
    return found


def _base_type(hint) -> type:
    """``Optional[int]`` -> ``int``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint
