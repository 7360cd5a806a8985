"""Print a model's layers, output shapes, parameters and multiply-adds, Keras style.

examples:
  cnnzoo summary resnet50
  cnnzoo summary mobilenet_v1 --width-mult 0.5 --input-size 3,32,32 --num-classes 10 --keras
  cnnzoo summary googlenet --depth 1 --flops
  cnnzoo summary resnet18 --json
  cnnzoo summary resnet50 --weights torchvision --num-classes 5     # the model fine-tuning would start from
"""
from __future__ import annotations

import argparse
import dataclasses
import json

from cnnzoo.cli.common import add_model_arguments, input_size, model_overrides
from cnnzoo.factory import create_model_with_args
from cnnzoo.pretrained import KERAS_MODES, TORCHVISION_WEIGHTS
from cnnzoo.pretrained_lite import has_lite_weights
from cnnzoo.profiling import summary
from cnnzoo.registry import get_model_info

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
    parser.add_argument("--weights", help="build the model with these weights: 'torchvision' (alias 'imagenet') "
                                          "or a weights file (their class count and layout apply)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    options = dict(keras=args.keras, depth=args.depth, units="flops" if args.flops else "macs",
                   batch_size=args.batch_size, backward=args.backward)
    if args.weights is None:  # by name: counted on the meta device, no memory for the weights
        result = summary(args.model, args.input_size, **options, **model_overrides(args))
    else:
        model, model_args = create_model_with_args(args.model, weights=args.weights, **model_overrides(args))
        channels, *hw = get_model_info(args.model).input_size
        size = args.input_size or (model_args.get("in_chans", channels), *hw)
        result = dataclasses.replace(summary(model, size, **options), model_name=args.model)
    published = TORCHVISION_WEIGHTS.get(args.model)
    if args.json:
        print(json.dumps({**result.to_dict(), "weights": args.weights,
                          "published_weights": dataclasses.asdict(published) if published else None}, indent=2))
        return 0
    print(result)
    if args.weights is not None:
        print(f"Weights: {args.weights}")
    sources = ([f"{published.describe()}; use --weights torchvision"] if published else []) + (
        ["ImageNet-1k from the lite-weights packages; use --weights imagenet"] if has_lite_weights(args.model)
        else []) + (["keras.applications' ImageNet file; use --weights keras"] if args.model in KERAS_MODES else [])
    print(f"Published weights: {'; or '.join(sources)}" if sources
          else "Published weights: none (train from scratch, or start from a file with --weights PATH)")
    return 0
