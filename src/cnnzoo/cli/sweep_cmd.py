"""Parameters and multiply-adds over width multipliers x input resolutions, as in the MobileNet
paper's tables 6 and 7; optionally latency. Prints Markdown (or CSV); with --out DIR also writes
sweep.md, sweep.csv and sweep.png (MACs against parameters, one point per cell).

examples:
  cnnzoo sweep mobilenet_v2 --width-mult 1,0.75,0.5,0.25 --resolution 224,192,160,128
  cnnzoo sweep mobilenet_v1 --format csv --out results/sweep --latency --threads 1
"""
from __future__ import annotations

import argparse
import os

from cnnzoo.cli.common import float_list, int_list
from cnnzoo.errors import UserError
from cnnzoo.files import atomic_write_text
from cnnzoo.profiling.sweep import plot_sweep, sweep, to_csv, to_markdown

HELP = "params and MACs over width multipliers x resolutions (MobileNet tables)"
TAKES_MODEL_OVERRIDES = True  # e.g. --num-classes 10 --norm group


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a registered model with a width_mult argument")
    parser.add_argument("--width-mult", type=float_list, default=[1.0, 0.75, 0.5, 0.25],
                        help="comma-separated width multipliers (default 1,0.75,0.5,0.25)")
    parser.add_argument("--resolution", type=int_list, default=[224, 192, 160, 128],
                        help="comma-separated square input sizes in pixels (default 224,192,160,128)")
    parser.add_argument("--latency", action="store_true", help="also time each cell (batch 1, CPU)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes per cell with --latency")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for --latency")
    parser.add_argument("--format", choices=("markdown", "csv"), default="markdown", help="what to print")
    parser.add_argument("--out", metavar="DIR", help="also write sweep.md, sweep.csv and sweep.png here")


def run(args: argparse.Namespace) -> int:
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out!r} is a file; give a directory (it is created if missing)")
    overrides = dict(getattr(args, "extra_model_args", {}) or {})
    overrides.pop("width_mult", None)
    cells = sweep(args.model, args.width_mult, args.resolution, latency=args.latency,
                  repeats=args.repeat, threads=args.threads, **overrides)
    markdown, table_csv = to_markdown(cells, args.model), to_csv(cells)
    print(markdown if args.format == "markdown" else table_csv, end="\n" if args.format == "markdown" else "")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for filename, text in (("sweep.md", markdown + "\n"), ("sweep.csv", table_csv)):
            atomic_write_text(os.path.join(args.out, filename), text)
        png = plot_sweep(cells, os.path.join(args.out, "sweep.png"), args.model)
        print(f"wrote {os.path.join(args.out, 'sweep.md')}, sweep.csv and {png}")
    return 0

