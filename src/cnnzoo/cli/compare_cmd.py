"""Train several models on the same data with the same budget and write one report.

  cnnzoo compare                                   # a representative set on the built-in digits
  cnnzoo compare resnet18:norm=group resnet18:norm=batch --epochs 10
  cnnzoo compare mobilenet_v2:width_mult=0.5 vgg16_bn --data path/to/flowers --image-size 64 --repeats 3
  cnnzoo compare mobilenet_v1:width_mult=0.5,image_size=96 mobilenet_v1:image_size=128 --total-time 30

A model spec is NAME[:key=value,...]; image_size=N trains that model at N px (each size is prepared
once). Every model sees the same split, seeds and budget (--epochs, --time-budget minutes each, or
--total-time minutes shared equally). Before training, the plan - each model's estimated time from
a few measured steps, and the total - is printed. The output folder gets report.html (self-contained),
report.md, results.json, results.csv and plots/. Running the same command again reuses the models
already done with the same settings; a model that fails is reported and the others still run.
Exit status: 0 all done, 1 some model failed, 2 bad input, 130 interrupted (report still written).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cnnzoo.cli import EXIT_FAILED, EXIT_OK
from cnnzoo.cli.common import add_training_options, training_options_from_args
from cnnzoo.compare import LatencySettings, compare
from cnnzoo.compare.analysis import verdict
from cnnzoo.compare.plan import plans_table
from cnnzoo.compare.results import model_slug
from cnnzoo.training import TrainConfig
from cnnzoo.training.distributed import Processes

HELP = "train several models on the same data and compare them in one report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="model specs such as resnet18 or mobilenet_v1:width_mult=0.5 "
                             "(default: one of each family, sized to the data)")
    parser.add_argument("--out", help="output folder (default: runs/compare-<data name>)")
    parser.add_argument("--show-plans", action="store_true",
                        help="print the default model sets and how one is chosen, then exit")
    parser.add_argument("--no-progress", "--quiet", dest="no_progress", action="store_true",
                        help="no progress bars or per-epoch lines (progress bars appear only on a terminal)")
    parser.add_argument("--repeats", type=int, default=1, metavar="N",
                        help="train each model N times with seeds SEED..SEED+N-1 and report mean +- std "
                             "(default: 1)")
    parser.add_argument("--total-time", type=float, metavar="MIN",
                        help="training minutes for the whole comparison, shared equally by the models "
                             "(instead of --epochs or --time-budget)")
    parser.add_argument("--runtime", choices=("torch", "onnxruntime", "int8"), default="torch",
                        help="where each trained model's latency is measured: PyTorch (default), or exported "
                             "and verified, in onnxruntime fp32 or int8 (calibrated on the training images); "
                             "needs `pip install 'cnnzoo[export]'`")
    # The same for every model; --epochs or --time-budget, not both (unset: sized to the data).
    add_training_options(parser, "compare", exclusive=("epochs", "time_budget_s"))


def default_out_dir(data: str) -> Path:
    """``runs/compare-<data name>``: the same command always finds (and resumes) the same folder."""
    name = Path(data.rstrip("/\\")).name or "data"
    return Path("runs") / f"compare-{model_slug(name)}"


def run(args: argparse.Namespace) -> int:
    if args.show_plans:
        print(plans_table())
        return EXIT_OK
    options = training_options_from_args(args, "compare")  # exactly what the user set
    out_dir = Path(args.out) if args.out else default_out_dir(options.get("data", TrainConfig.data))
    total_time_s = None if args.total_time is None else 60 * args.total_time
    result = compare(args.models or None, out_dir=out_dir, progress=not args.no_progress, repeats=args.repeats,
                     total_time_s=total_time_s, latency=LatencySettings(runtime=args.runtime), **options)
    if not Processes.from_env().is_main:  # under torchrun, rank 0 speaks for the job
        return EXIT_OK if result.all_done else EXIT_FAILED
    print()
    print(result.table())
    print()
    for line in verdict(result.models):
        print(line)
    print(f"\nReport: {result.paths.get('report.html', out_dir / 'report.html')}")
    return EXIT_OK if result.all_done else EXIT_FAILED
