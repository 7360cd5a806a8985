"""The learning-rate range test: train a few batches while the rate grows exponentially, plot the loss
against it, and suggest a peak rate for --lr (a tenth of where the loss turns up).

examples:
  cnnzoo lr-find resnet18                                  # built-in digits
  cnnzoo lr-find mobilenet_v2 --data flowers/ --width-mult 0.5 --optimizer adamw --out runs/lr
  cnnzoo lr-find resnet18 --start-lr 1e-5 --end-lr 1 --steps 60

The model, data, loader and optimizer are built as `cnnzoo train` builds them with the same options;
the weights are put back afterwards. Writes lr_find.png and lr_find.json to --out.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cnnzoo.cli.common import add_model_arguments, add_training_options, model_overrides, training_options_from_args
from cnnzoo.training.lr_find import find_lr

HELP = "learning-rate range test: the loss against the rate, and a suggested --lr"
TAKES_MODEL_OVERRIDES = True
# The training options that shape the sweep (the rest - epochs, schedule, output - do not).
OPTIONS = ("data", "val_data", "path_column", "label_column", "batch_size", "optimizer", "weight_decay",
           "label_smoothing", "image_size", "resize", "augment", "mixup", "cutmix", "channels_last", "amp", "seed",
           "device", "threads", "cache_dir", "weights", "finetune", "backbone_lr_scale", "freeze_bn")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model name (see `cnnzoo list`)")
    parser.add_argument("--start-lr", type=float, default=1e-7, help="the sweep's first rate (default 1e-7)")
    parser.add_argument("--end-lr", type=float, default=10.0, help="its last rate (default 10)")
    parser.add_argument("--steps", type=int, default=100, help="batches in the sweep (default 100)")
    parser.add_argument("--out", help="folder for lr_find.png and lr_find.json (default runs/lr-find-<model>)")
    add_training_options(parser, "train", only=OPTIONS)
    parser.add_argument("--quiet", action="store_true", help="no download or preparation progress")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    options = {k: v for k, v in training_options_from_args(args, "train").items() if k in OPTIONS}
    out = Path(args.out or Path("runs") / f"lr-find-{args.model}")
    result = find_lr(model=args.model, model_args=model_overrides(args), start_lr=args.start_lr, end_lr=args.end_lr,
                     num_steps=args.steps, out_dir=out, progress=not args.quiet, **options)
    print(f"{len(result.lrs)} steps from {result.lrs[0]:.2g} to {result.lrs[-1]:.2g} (stopped: {result.stopped})")
    print(result)
    print(f"wrote {out / 'lr_find.png'} and {out / 'lr_find.json'}")
    return 0
