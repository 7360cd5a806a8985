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

from cnnzoo import training
from cnnzoo.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from cnnzoo.cli.common import add_model_arguments, add_training_options, model_overrides, training_options_from_args
from cnnzoo.display import METRIC_LABELS
from cnnzoo.training.distributed import Processes

HELP = "train a model (checkpoints, history, learning curves; --resume continues exactly)"
TAKES_MODEL_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model name (see `cnnzoo list`)")
    add_training_options(parser, "train")
    parser.add_argument("--quiet", "--no-progress", action="store_true",
                        help="no progress bar or per-epoch lines (progress bars appear only on a terminal)")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    options = training_options_from_args(args, "train")
    try:
        result = training.train(model=args.model, model_args=model_overrides(args), progress=not args.quiet,
                                **options)
    except training.TrainingDiverged as err:
        print(f"cnnzoo train: training diverged: {err}", file=sys.stderr)
        return EXIT_FAILED
    if result.stopped_reason == "interrupted":
        return EXIT_INTERRUPTED
    if not Processes.from_env().is_main:  # under torchrun, rank 0 speaks for the job
        return EXIT_OK
    metric = "validation " + METRIC_LABELS.get(result.monitor.removeprefix("val_"), result.monitor)
    best = "no epoch completed" if result.best_score is None else (
        f"best {metric} {result.best_score:.4f} at epoch {result.best_epoch}")
    speed = f"{result.images_per_s:.0f} {result.unit}s/s training"  # images, or windows of a sequence
    print(f"{best} ({result.stopped_reason}, {result.train_time_s:.0f}s, {speed}); "
          f"outputs in {result.out_dir}: best.pt last.pt history.csv history.json curves.png")
    if result.test_metrics:
        print(f"test split ({result.test_metrics['test_images']} images, never used to choose the epoch): "
              f"accuracy {result.test_metrics['test_acc']:.4f}")
    return EXIT_OK
