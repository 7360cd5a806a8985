"""Arguments shared by several subcommands: model overrides, input sizes, number lists."""
from __future__ import annotations

import argparse
from typing import Any

from cnnzoo.errors import UserError
from cnnzoo.layers.factories import ACT_NAMES, NORM_NAMES
from cnnzoo.registry import parse_value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The overrides most models take. Others pass through as ``--name value`` (see the CLI docstring)."""
    g = parser.add_argument_group("model overrides (left unset, each model keeps its own default; "
                                  "any other constructor argument can be given as --name value)")
    g.add_argument("--num-classes", type=int, help="number of output classes")
    g.add_argument("--in-chans", type=int, help="input channels")
    g.add_argument("--width-mult", type=float, help="width multiplier (alpha) where the family has one")
    g.add_argument("--norm", choices=NORM_NAMES, help="normalisation layer")
    g.add_argument("--act", choices=ACT_NAMES, help="activation")
    g.add_argument("--drop-rate", type=float, help="dropout before the classifier")
    g.add_argument("--conv-bias", action=argparse.BooleanOptionalAction, default=None,
                   help="give convolutions a bias")


MODEL_ARGUMENT_NAMES = ("num_classes", "in_chans", "width_mult", "norm", "act", "drop_rate", "conv_bias")


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
    return tuple(values)


def add_training_arguments(parser: argparse.ArgumentParser, title: str) -> None:
    """The training options `train` and `compare` share, spelled the same in both. Left unset, each
    takes the default for the data and model (see cnnzoo.training.config)."""
    from cnnzoo.data import RESIZE_MODES
    from cnnzoo.training.config import AUGMENTS, DEVICES, OPTIMIZERS, SCHEDULES

    g = parser.add_argument_group(title)
    g.add_argument("--batch-size", type=int, help="images per step (default: 64, smaller for small data)")
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--optimizer", choices=OPTIMIZERS)
    g.add_argument("--schedule", choices=SCHEDULES)
    g.add_argument("--warmup", type=float, dest="warmup_epochs", metavar="EPOCHS",
                   help="linear warm-up length in epochs")
    g.add_argument("--weight-decay", type=float, help="on convolution and linear weights only")
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--image-size", type=int, help="image side in pixels (default: the data set's own)")
    g.add_argument("--resize", choices=RESIZE_MODES, default="shorter_crop",
                   help="how folder images are brought to --image-size (default: shorter_crop)")
    g.add_argument("--augment", choices=AUGMENTS)
    g.add_argument("--patience", type=int, help="stop after this many epochs without a better val accuracy")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="NHWC memory layout (default: on for CPU, and for CUDA with --amp)")
    g.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 on CPU, float16 on CUDA)")
    g.add_argument("--seed", type=int, default=0, help="model init, data split, order, augmentation")
    g.add_argument("--val-fraction", type=float, default=0.2, help="share held out for validation")
    g.add_argument("--device", choices=DEVICES, default="auto")
    g.add_argument("--threads", type=int, help="CPU threads for PyTorch (on a busy machine, 1 is often faster)")
    g.add_argument("--cache-dir", help="where prepared image folders are cached (default ~/.cache/cnnzoo)")


# TrainConfig fields that add_training_arguments sets, under the same names.
TRAINING_FIELDS = ("batch_size", "lr", "optimizer", "schedule", "warmup_epochs", "weight_decay",
                   "label_smoothing", "image_size", "resize", "augment", "patience", "channels_last", "amp",
                   "seed", "val_fraction", "device", "threads", "cache_dir")


def add_time_budget_argument(parser) -> None:
    parser.add_argument("--time-budget", type=float, metavar="MIN",
                        help="training minutes per model; stops at the first epoch boundary past it")


def time_budget_seconds(args: argparse.Namespace):
    return None if args.time_budget is None else args.time_budget * 60
