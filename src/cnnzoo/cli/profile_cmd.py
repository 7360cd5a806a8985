"""Time models: latency per batch and per image (median and inter-quartile spread over repeats,
after warm-up), throughput, achieved GFLOP/s as a fraction of this machine's measured
matrix-multiply peak, and peak memory. CPU always; CUDA too when present (or pick --device).

examples:
  cnnzoo profile resnet18 mobilenet_v2 --batch-size 1,32
  cnnzoo profile mobilenet_v2 --input-size 3,160,160 --threads 1 --channels-last --json
  cnnzoo profile resnet50 --weights torchvision        # the architecture those weights define
"""
from __future__ import annotations

import argparse
import json

from cnnzoo.cli.common import add_model_arguments, input_size, int_list, model_overrides
from cnnzoo.factory import create_model_with_args
from cnnzoo.profiling.profile import format_profile_table, profile_models

HELP = "latency, throughput, achieved GFLOP/s and memory of one or more models"
TAKES_MODEL_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help="registered model names")
    parser.add_argument("--batch-size", type=int_list, default=[1], help="comma-separated, e.g. 1,32 (default 1)")
    parser.add_argument("--input-size", type=input_size, default=None,
                        help="C,H,W or one size (default: each model's design size)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    parser.add_argument("--repeat", type=int, default=10, help="timed passes per measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes first (default 2)")
    parser.add_argument("--device", action="append", default=None,
                        help="cpu or cuda; repeatable (default: cpu, plus cuda when available)")
    parser.add_argument("--weights", help="build each model with these weights: 'torchvision' (alias "
                                          "'imagenet') or a weights file (their class count and layout apply)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    options = dict(batch_sizes=args.batch_size, input_size=args.input_size, devices=args.device,
                   threads=args.threads, channels_last=args.channels_last, repeats=args.repeat, warmup=args.warmup)
    if args.weights is None:
        report = profile_models(args.models, **options, **model_overrides(args))
    else:
        report = _profile_with_weights(args, options)
    print(json.dumps(report, indent=2) if args.json else format_profile_table(report))
    return 0


def _profile_with_weights(args: argparse.Namespace, options: dict) -> dict:
    """Each model as the weights build it (create_model with weights: their class count, a reference
    layout...), timed by profile_models, which rebuilds it from those arguments: the values of the
    weights do not change the work a forward pass does."""
    reports = []
    for name in args.models:
        model, model_args = create_model_with_args(name, weights=args.weights, **model_overrides(args))
        del model
        reports.append(profile_models([name], **options, **model_args))
    report = {**reports[0], "results": [r for rep in reports for r in rep["results"]], "weights": args.weights}
    return report
