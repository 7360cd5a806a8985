"""Print a model's layers, output shapes, parameters and multiply-adds, Keras style.

examples:
  cnnzoo summary resnet50
  cnnzoo summary mobilenet_v1 --width-mult 0.5 --input-size 3,32,32 --num-classes 10 --keras
  cnnzoo summary googlenet --depth 1 --flops
  cnnzoo summary resnet18 --json
"""
from __future__ import annotations

import argparse
import json

from cnnzoo.cli.common import add_model_arguments, input_size, model_overrides
from cnnzoo.profiling import summary

HELP = "layer table: output shapes, parameters, multiply-adds"
TAKES_MODEL_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="registered model name (see `cnnzoo list`)")
    parser.add_argument("--input-size", type=input_size, default=None,
                        help="C,H,W or one size (default: the model's design size, usually 3,224,224)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    parser.add_argument("--keras", action="store_true",
                        help="Keras convention: count normalisation running statistics as "
                             "non-trainable parameters, as Keras' model.summary() does")
    parser.add_argument("--depth", type=int, default=None,
                        help="collapse modules nested deeper than this (default: every layer)")
    parser.add_argument("--flops", action="store_true", help="show FLOPs (= 2 x multiply-adds) instead of MACs")
    parser.add_argument("--backward", action="store_true",
                        help="also count the backward pass of a training step")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    result = summary(args.model, args.input_size, keras=args.keras, depth=args.depth,
                     units="flops" if args.flops else "macs", batch_size=args.batch_size,
                     backward=args.backward, **model_overrides(args))
    print(json.dumps(result.to_dict(), indent=2) if args.json else result)
    return 0
