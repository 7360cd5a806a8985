"""Train several models on the same data with the same budget and write one report.

  cnnzoo compare                                   # a representative set on the built-in digits
  cnnzoo compare resnet18:norm=group resnet18:norm=batch --epochs 10
  cnnzoo compare mobilenet_v2:width_mult=0.5 vgg16_bn --data path/to/flowers --image-size 64

A model spec is NAME[:key=value,...]. Every model sees the same split, seed and budget (--epochs, or
--time-budget minutes each). The output folder gets report.html (self-contained), report.md,
results.json, results.csv and plots/. Running the same command again reuses the models already
done with the same settings; a model that fails is reported and the others still run.
Exit status: 0 all done, 1 some model failed, 2 bad input, 130 interrupted (report still written).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cnnzoo.cli import EXIT_FAILED, EXIT_OK
from cnnzoo.cli.common import TRAINING_FIELDS, add_time_budget_argument, add_training_arguments, time_budget_seconds

HELP = "train several models on the same data and compare them in one report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="model specs such as resnet18 or mobilenet_v1:width_mult=0.5 "
                             "(default: one of each family, sized to the data)")
    parser.add_argument("--data", default="digits",
                        help="an image folder (one sub-folder per class) or a built-in source "
                             "(default: digits)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="epochs per model (default: sized to the data)")
    add_time_budget_argument(budget)
    parser.add_argument("--out", help="output folder (default: runs/compare-<data name>)")
    parser.add_argument("--show-plans", action="store_true",
                        help="print the default model sets and how one is chosen, then exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_training_arguments(parser, "training options (the same for every model; unset = cnnzoo train's defaults)")


# Options compare passes to compare() by name rather than as shared training options.
OWN_OPTIONS = ("image_size", "resize", "seed", "val_fraction", "cache_dir")


def default_out_dir(data: str) -> Path:
    """``runs/compare-<data name>``: the same command always finds (and resumes) the same folder."""
    from cnnzoo.compare.results import model_slug

    name = Path(data.rstrip("/\\")).name or "data"
    return Path("runs") / f"compare-{model_slug(name)}"


def run(args: argparse.Namespace) -> int:
    from cnnzoo.compare import compare
    from cnnzoo.compare.plan import plans_table

    if args.show_plans:
        print(plans_table())
        return EXIT_OK
    # Only what the user set (an unset option is None, or False for on/off flags that default to off),
    # so every model keeps its own defaults for the rest. --no-channels-last is a False that was set.
    options = {k: getattr(args, k) for k in TRAINING_FIELDS
               if k not in OWN_OPTIONS and getattr(args, k) is not None
               and (getattr(args, k) is not False or k == "channels_last")}
    if options.get("device") == "auto":
        del options["device"]
    out_dir = Path(args.out) if args.out else default_out_dir(args.data)
    result = compare(
        args.models or None, data=args.data, epochs=args.epochs,
        time_budget_s=time_budget_seconds(args),
        image_size=args.image_size, out_dir=out_dir, seed=args.seed, val_fraction=args.val_fraction,
        cache_dir=args.cache_dir, resize=args.resize, progress=not args.no_progress, **options,
    )
    print()
    print(result.table())
    print()
    from cnnzoo.compare.analysis import verdict

    for line in verdict(result.records):
        print(line)
    print(f"\nReport: {result.paths.get('report.html', out_dir / 'report.html')}")
    return EXIT_OK if result.all_done else EXIT_FAILED
