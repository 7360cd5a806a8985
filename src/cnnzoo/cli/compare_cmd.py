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
    budget.add_argument("--time-budget", type=float, metavar="MIN",
                        help="training minutes per model instead of a number of epochs")
    parser.add_argument("--image-size", type=int, help="image side in pixels (default: the data's own)")
    parser.add_argument("--resize", choices=("shorter_crop", "stretch", "pad"), default="shorter_crop",
                        help="how folder images are brought to --image-size (default: shorter_crop)")
    parser.add_argument("--out", help="output folder (default: runs/compare-<data name>)")
    parser.add_argument("--show-plans", action="store_true",
                        help="print the default model sets and how one is chosen, then exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    t = parser.add_argument_group("training options (the same for every model; unset = cnnzoo train's defaults)")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float, help="peak learning rate")
    t.add_argument("--optimizer", choices=("sgd", "adamw", "adam"))
    t.add_argument("--schedule", choices=("cosine", "onecycle", "step", "none"))
    t.add_argument("--warmup-epochs", type=float)
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--label-smoothing", type=float)
    t.add_argument("--augment", choices=("none", "light", "standard"))
    t.add_argument("--patience", type=int, help="early stopping after this many epochs without improvement")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--val-fraction", type=float, default=0.2)
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument("--threads", type=int, help="CPU threads for torch")
    t.add_argument("--channels-last", action="store_true")
    t.add_argument("--amp", action="store_true", help="mixed precision")
    t.add_argument("--cache-dir", help="where prepared image folders are cached")


# CLI flag -> TrainConfig field, passed on only when the user set it.
TRAINING_OPTIONS = ("batch_size", "lr", "optimizer", "schedule", "warmup_epochs", "weight_decay",
                    "label_smoothing", "augment", "patience", "device", "threads")


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
    options = {k: getattr(args, k) for k in TRAINING_OPTIONS if getattr(args, k) is not None}
    if args.channels_last:
        options["channels_last"] = True
    if args.amp:
        options["amp"] = True
    out_dir = Path(args.out) if args.out else default_out_dir(args.data)
    result = compare(
        args.models or None, data=args.data, epochs=args.epochs,
        time_budget_s=args.time_budget * 60 if args.time_budget is not None else None,
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
