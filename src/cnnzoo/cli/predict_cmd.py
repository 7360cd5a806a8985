"""Classify images with a checkpoint, or with a pretrained model by name (ImageNet's classes):
the top-k classes and their probabilities for each image.

examples:
  cnnzoo predict runs/resnet18-flowers/best.pt rose.jpg tulip.jpg
  cnnzoo predict best.pt photos/*.jpg --top-k 3 --json
  cnnzoo predict efficientnet_lite0 --weights imagenet daisy.jpg          # try before training
  cnnzoo predict mobilenet_v2 --weights keras photo.jpg --tta             # plain and flip-averaged

An image that cannot be read is reported and the others are still classified; the exit status
is then 1.
"""
from __future__ import annotations

import argparse
import json
import sys

from cnnzoo.cli import EXIT_FAILED, EXIT_OK
from cnnzoo.cli.common import add_model_arguments, model_overrides
from cnnzoo.errors import UserError
from cnnzoo.text import table
from cnnzoo.training import predict

HELP = "classify image files with a checkpoint or a pretrained model (top-k table or JSON)"
TAKES_MODEL_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT_OR_NAME",
                        help="a .pt file written by `cnnzoo train`, or a model name with --weights")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--weights", help="with a model name: ImageNet weights to run, 'imagenet' (alias "
                                          "'torchvision'), 'keras', or a file (.pth, Keras' .h5)")
    parser.add_argument("--tta", action="store_true",
                        help="also show the prediction averaged with the mirrored image's (test-time augmentation)")
    parser.add_argument("--top-k", type=int, default=5, help="classes to show per image (default 5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {args.top_k}")
    predictions = predict(args.checkpoint, args.images, top_k=args.top_k, device=args.device,
                          weights=args.weights, tta=args.tta, **model_overrides(args))
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
    else:
        print(format_table(predictions))
    failed = [p for p in predictions if p.error is not None]
    for p in failed if args.json else ():  # the table already shows them
        print(f"cnnzoo predict: {p.path}: {p.error}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def format_table(predictions) -> str:
    """One block per image: rank, class, probability (and, with TTA, the flip-averaged ones beside)."""
    lines = []
    for p in predictions:
        lines.append(p.path)
        if p.error is not None:
            lines.append(f"  error: {p.error}")
            continue
        if p.tta:
            rows = [(f"{rank}. {cls}", f"{prob:.4f}", tta_cls, f"{tta_prob:.4f}")
                    for rank, ((cls, prob), (tta_cls, tta_prob)) in enumerate(zip(p.top, p.tta), 1)]
            ranked = table(rows, ("plain", "p", "flip-averaged", "p"))
        else:
            ranked = table([(f"{rank}. {cls}", f"{prob:.4f}") for rank, (cls, prob) in enumerate(p.top, 1)])
        lines += ["  " + line for line in ranked.splitlines()]
    return "\n".join(lines)
