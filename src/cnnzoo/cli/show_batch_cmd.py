"""Draw a grid of training images exactly as the loader hands them to a model: after augmentation,
with the normalisation undone, each titled with its class.

examples:
  cnnzoo show-batch --data digits --augment none --out digits.png
  cnnzoo show-batch --data ./flowers --augment standard --image-size 96 --n 16 --out grid.png
  cnnzoo show-batch --data cifar10 --augment light --epoch 3 --seed 1 --out epoch3.png   # what epoch 3 of seed 1 sees
"""
from __future__ import annotations

import argparse

from cnnzoo.data import show_batch
from cnnzoo.data.augment import AUGMENT_CHOICES
from cnnzoo.data.sources import SOURCES_HELP

HELP = "a grid of training images as the model sees them (augmented, de-normalised)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help=SOURCES_HELP)
    parser.add_argument("--augment", default="light", choices=AUGMENT_CHOICES,
                        help="augmentation applied by the loader (default light)")
    parser.add_argument("--n", type=int, default=16, help="images in the grid (default 16)")
    parser.add_argument("--image-size", type=int, default=None, help="side the images are prepared at "
                                                                     "(default: the source's)")
    parser.add_argument("--seed", type=int, default=0, help="the training seed whose batch to draw (default 0)")
    parser.add_argument("--epoch", type=int, default=0, help="the epoch whose first batch to draw (default 0)")
    parser.add_argument("--columns", type=int, default=None, help="images per row (default: by count)")
    parser.add_argument("--out", required=True, help="PNG file to write")


def run(args: argparse.Namespace) -> int:
    grid = show_batch(args.data, augment=args.augment, n=args.n, seed=args.seed, epoch=args.epoch,
                      image_size=args.image_size, columns=args.columns, progress=True)
    path = grid.save(args.out)
    print(f"wrote {path}: {len(grid.titles)} images ({', '.join(sorted(set(grid.titles)))})")
    return 0
