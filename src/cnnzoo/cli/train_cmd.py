"""Train a model on a data set with defaults that learn, writing checkpoints, history and curves.

examples:
  cnnzoo train resnet18                               # built-in digits, 32 px
  cnnzoo train mobilenet_v2 --data flowers/ --width-mult 0.5 --epochs 30
  cnnzoo train vgg16 --norm none --out runs/vgg       # a no-norm model gets AdamW and a longer warm-up
  cnnzoo train vgg16 --out runs/vgg --resume          # continue a killed or interrupted run

Options left unset take the default for the data and model; the resolved values are printed at
the start and stored in history.json and in every checkpoint.
"""
from __future__ import annotations

import argparse
import sys

from cnnzoo.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from cnnzoo.cli.common import (TRAINING_FIELDS, add_model_arguments, add_time_budget_argument,
                               add_training_arguments, model_overrides, time_budget_seconds)

HELP = "train a model (checkpoints, history, learning curves; --resume continues exactly)"
TAKES_MODEL_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model name (see `cnnzoo list`)")
    parser.add_argument("--data", default="digits",
                        help="an image folder, 'digits' (built in, the default), 'synthetic', 'cifar10'...")
    parser.add_argument("--epochs", type=int, help="default: about 20,000 images seen, 8 to 60 epochs")
    add_time_budget_argument(parser)
    add_training_arguments(parser, "training (unset: the default for this data and model)")
    r = parser.add_argument_group("output")
    r.add_argument("--out", dest="out_dir", help="output folder (default runs/<model>-<data>)")
    r.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    r.add_argument("--deterministic", action="store_true",
                   help="deterministic GPU kernels, so --resume is exact on CUDA too (CPU always is)")
    r.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    add_model_arguments(parser)


CONFIG_FLAGS = ("data", "epochs", *TRAINING_FIELDS, "out_dir", "resume", "deterministic")


def run(args: argparse.Namespace) -> int:
    from cnnzoo.training import TrainingDiverged, train

    fields = {name: getattr(args, name) for name in CONFIG_FLAGS}
    fields["time_budget_s"] = time_budget_seconds(args)
    try:
        result = train(model=args.model, model_args=model_overrides(args), progress=not args.quiet, **fields)
    except TrainingDiverged as err:
        print(f"cnnzoo train: training diverged: {err}", file=sys.stderr)
        return EXIT_FAILED
    if result.stopped_reason == "interrupted":
        return EXIT_INTERRUPTED
    print(f"best validation accuracy {result.best_val_acc:.4f} at epoch {result.best_epoch} "
          f"({result.stopped_reason}, {result.train_time_s:.0f}s, {result.images_per_s:.0f} img/s training); "
          f"outputs in {result.out_dir}: best.pt last.pt history.csv history.json curves.png")
    return EXIT_OK
