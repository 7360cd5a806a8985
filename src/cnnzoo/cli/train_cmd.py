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
from cnnzoo.cli.common import add_model_arguments, model_overrides

HELP = "train a model (checkpoints, history, learning curves; --resume continues exactly)"
TAKES_MODEL_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cnnzoo.training.config import AUGMENTS, DEVICES, OPTIMIZERS, SCHEDULES

    parser.add_argument("model", help="a model name (see `cnnzoo list`)")
    parser.add_argument("--data", default="digits",
                        help="an image folder, 'digits' (built in, the default), 'synthetic', 'cifar10'...")
    g = parser.add_argument_group("training (unset: the default for this data and model)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--optimizer", choices=OPTIMIZERS)
    g.add_argument("--schedule", choices=SCHEDULES)
    g.add_argument("--warmup", type=float, dest="warmup_epochs", metavar="EPOCHS",
                   help="linear warm-up length in epochs")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--image-size", type=int, help="image side in pixels (default: the data set's)")
    g.add_argument("--augment", choices=AUGMENTS)
    g.add_argument("--channels-last", action="store_true", help="NHWC memory layout")
    g.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 on CPU, float16 on CUDA)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--val-fraction", type=float, default=0.2)
    g.add_argument("--patience", type=int, help="stop after this many epochs without a better val accuracy")
    g.add_argument("--time-budget", type=float, dest="time_budget_s", metavar="SECONDS",
                   help="stop at the first epoch boundary past this wall time")
    r = parser.add_argument_group("output and machine")
    r.add_argument("--out", dest="out_dir", help="output folder (default runs/<model>-<data>)")
    r.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    r.add_argument("--device", choices=DEVICES, default="auto")
    r.add_argument("--deterministic", action="store_true",
                   help="deterministic GPU kernels, so --resume is exact on CUDA too (CPU always is)")
    r.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    r.add_argument("--cache-dir", help="where prepared image folders are cached")
    r.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    add_model_arguments(parser)


CONFIG_FLAGS = ("data", "epochs", "batch_size", "lr", "optimizer", "schedule", "warmup_epochs",
                "weight_decay", "label_smoothing", "image_size", "augment", "channels_last", "amp", "seed",
                "val_fraction", "patience", "time_budget_s", "out_dir", "resume", "device", "deterministic", "threads",
                "cache_dir")


def run(args: argparse.Namespace) -> int:
    from cnnzoo.training import TrainingDiverged, train

    fields = {name: getattr(args, name) for name in CONFIG_FLAGS}
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
