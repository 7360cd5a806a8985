"""Cost tables over a model's knobs. Prints Markdown (or CSV); with --out DIR also writes sweep.md,
sweep.csv and sweep.png.

- A model with a width multiplier: parameters and multiply-adds over width multipliers x input
  resolutions, as in the MobileNet paper's tables 6 and 7; optionally latency. The plot is MACs
  against parameters, one point per cell.
- WaveNet (a dilated sequence model): receptive field against parameters over depth (layers per
  stack, and stacks): the receptive field grows exponentially with depth, the parameters linearly.

examples:
  cnnzoo sweep mobilenet_v2 --width-mult 1,0.75,0.5,0.25 --resolution 224,192,160,128
  cnnzoo sweep mobilenet_v1 --format csv --out results/sweep --latency --threads 1
  cnnzoo sweep wavenet --layers-per-stack 4,6,8,10 --stacks 1,3 --out results/wavenet-depth
"""
from __future__ import annotations

import argparse
import os

from cnnzoo.cli.common import float_list, int_list
from cnnzoo.errors import UserError
from cnnzoo.files import atomic_write_text
from cnnzoo.profiling.sweep import (
    depth_sweep,
    depth_to_csv,
    depth_to_markdown,
    plot_depth_sweep,
    plot_sweep,
    sweep,
    to_csv,
    to_markdown,
)
from cnnzoo.registry import get_model_info

HELP = "params and MACs over width x resolution (MobileNet tables), or WaveNet's receptive field over depth"
TAKES_MODEL_OVERRIDES = True  # e.g. --num-classes 10 --norm group
WIDTHS, RESOLUTIONS, LAYERS_PER_STACK = [1.0, 0.75, 0.5, 0.25], [224, 192, 160, 128], [2, 4, 6, 8, 10]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a registered model with a width_mult argument, or WaveNet")
    parser.add_argument("--width-mult", type=float_list, default=None,
                        help="comma-separated width multipliers (default 1,0.75,0.5,0.25)")
    parser.add_argument("--resolution", type=int_list, default=None,
                        help="comma-separated square input sizes in pixels (default 224,192,160,128)")
    parser.add_argument("--layers-per-stack", type=int_list, default=None,
                        help="WaveNet: comma-separated layers per dilation stack (default 2,4,6,8,10)")
    parser.add_argument("--stacks", type=int_list, default=None,
                        help="WaveNet: comma-separated numbers of stacks (default: the model's)")
    parser.add_argument("--latency", action="store_true", help="also time each cell (batch 1, CPU)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes per cell with --latency")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for --latency")
    parser.add_argument("--format", choices=("markdown", "csv"), default="markdown", help="what to print")
    parser.add_argument("--out", metavar="DIR", help="also write sweep.md, sweep.csv and sweep.png here")


def run(args: argparse.Namespace) -> int:
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out!r} is a file; give a directory (it is created if missing)")
    overrides = dict(getattr(args, "extra_model_args", {}) or {})
    if "layers_per_stack" in get_model_info(args.model).arguments:
        markdown, table_csv, draw = _depth(args, overrides)
    else:
        markdown, table_csv, draw = _width(args, overrides)
    print(markdown if args.format == "markdown" else table_csv, end="\n" if args.format == "markdown" else "")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for filename, text in (("sweep.md", markdown + "\n"), ("sweep.csv", table_csv)):
            atomic_write_text(os.path.join(args.out, filename), text)
        png = draw(os.path.join(args.out, "sweep.png"))
        print(f"wrote {os.path.join(args.out, 'sweep.md')}, sweep.csv and {png}")
    return 0


def _width(args, overrides):
    if args.layers_per_stack or args.stacks:
        raise UserError(f"--layers-per-stack and --stacks are for WaveNet; {args.model} sweeps --width-mult and "
                        "--resolution")
    overrides.pop("width_mult", None)
    cells = sweep(args.model, args.width_mult or WIDTHS, args.resolution or RESOLUTIONS, latency=args.latency,
                  repeats=args.repeat, threads=args.threads, **overrides)
    return (to_markdown(cells, args.model), to_csv(cells),
            lambda path: plot_sweep(cells, path, args.model))


def _depth(args, overrides):
    if args.width_mult or args.resolution or args.latency:
        raise UserError(f"{args.model} sweeps its depth: use --layers-per-stack and --stacks "
                        "(--width-mult, --resolution and --latency are for image models)")
    overrides.pop("layers_per_stack", None)
    cells = depth_sweep(args.model, args.layers_per_stack or LAYERS_PER_STACK, args.stacks, **overrides)
    return (depth_to_markdown(cells, args.model), depth_to_csv(cells),
            lambda path: plot_depth_sweep(cells, path, args.model))
