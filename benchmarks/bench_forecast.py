"""WaveNet against the forecasts every forecaster is checked against, on the real series statsmodels
ships: sunspots (yearly), the Nile (yearly), El Niño (monthly sea temperatures) and Mauna Loa CO2
(weekly, averaged to months: a trend and a yearly season).

For each series the last 24 steps are the test: a small WaveNet (receptive field 32) is trained on
the rest with `cnnzoo train` (its own validation end, early stopping, the default transform), then
`cnnzoo forecast --backtest 1 --horizon 24` forecasts the test from the training part and scores it
next to naive, seasonal naive and ETS (statsmodels' Holt-Winters). Three seeds; the baselines are
deterministic. Prints one Markdown table (MASE and sMAPE, mean and range over the seeds) and the
transform the default chose for each series, and keeps the forecast plot of the trending series.

``macrodata``: several series, one global model. Eight quarterly US macro series of statsmodels'
macrodata (GDP, consumption, investment, government spending, income, CPI, M1, population; 203
quarters, every one trending, of very different scales) in one wide CSV, trained as one WaveNet
(``--wide``: windows of all eight pooled, each standardised on its own) and backtested per series on
its last 24 quarters; the table gives each series' MASE and the mean over the eight, next to the
same WaveNet trained on each series alone (``wavenet (one per series)``: eight models, each with the
transform its own series calls for), which is the question a global model answers.

    .venv/bin/python benchmarks/bench_forecast.py --out /tmp/bench_forecast [--seeds 3] [--epochs 80]
    .venv/bin/python benchmarks/bench_forecast.py --only macrodata --seeds 3 [--local-transform diff]

Needs the ``forecast`` extra (statsmodels) for the data and the ETS row.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import statsmodels.api as sm

from cnnzoo.checkpoint import load_checkpoint
from cnnzoo.cli import main
from cnnzoo.training.backtest import Backtest, PanelBacktest

HORIZON = 24
MODEL = ["--layers-per-stack", "5", "--stacks", "1", "--residual-channels", "16", "--gate-channels", "16",
         "--skip-channels", "32"]  # receptive field 32: the Nile has 100 steps


def series() -> dict[str, tuple[list[str], np.ndarray]]:
    """name -> (steps, values)."""
    data = sm.datasets
    sun = data.sunspots.load_pandas().data
    nile = data.nile.load_pandas().data
    nino = data.elnino.load_pandas().data
    co2 = data.co2.load_pandas().data["co2"].resample("MS").mean().interpolate()
    nino_values = nino.drop(columns="YEAR").to_numpy().ravel()
    nino_steps = [f"{int(y)}-{m:02d}" for y in nino["YEAR"] for m in range(1, 13)]
    return {
        "sunspots": ([str(int(y)) for y in sun["YEAR"]], sun["SUNACTIVITY"].to_numpy()),
        "nile": ([str(int(y)) for y in nile["year"]], nile["volume"].to_numpy()),
        "elnino": (nino_steps, nino_values),
        "co2": ([f"{d.year}-{d.month:02d}" for d in co2.index], co2.to_numpy()),
    }


MACRO_COLUMNS = ("realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1", "pop")


def macrodata() -> tuple[list[str], dict[str, np.ndarray]]:
    """The quarters (first day of each, so the season of 4 is found) and the eight series."""
    frame = sm.datasets.macrodata.load_pandas().data
    steps = [f"{int(y)}-{3 * int(q) - 2:02d}-01" for y, q in zip(frame["year"], frame["quarter"])]
    return steps, {name: frame[name].to_numpy() for name in MACRO_COLUMNS}


def write_wide(path: Path, steps, columns: dict[str, np.ndarray]) -> Path:
    path.write_text("date," + ",".join(columns) + "\n" + "".join(
        f"{s}," + ",".join(f"{v[i]:.4f}" for v in columns.values()) + "\n" for i, s in enumerate(steps)))
    return path


def run_panel(root: Path, seed: int, epochs: int) -> tuple[PanelBacktest, str]:
    """One global WaveNet on the eight macrodata series, backtested per series on the last HORIZON steps."""
    steps, columns = macrodata()
    folder = root / "macrodata"
    folder.mkdir(parents=True, exist_ok=True)
    train_csv = write_wide(folder / "train.csv", steps[:-HORIZON], {k: v[:-HORIZON] for k, v in columns.items()})
    full_csv = write_wide(folder / "full.csv", steps, columns)
    run = folder / f"run-{seed}"
    assert main(["train", "wavenet_small", "--data", str(train_csv), "--wide", "--epochs", str(epochs), "--seed",
                 str(seed), "--out", str(run), "--quiet", "--device", "cpu", "--threads", "1", *MODEL]) == 0
    out = folder / f"forecast-{seed}.csv"
    assert main(["forecast", str(run / "best.pt"), "--data", str(full_csv), "--horizon", str(HORIZON),
                 "--backtest", "1", "--samples", "100", "--seed", str(seed), "--out", str(out)]) == 0
    fields = load_checkpoint(run / "best.pt").fields
    return PanelBacktest.from_dict(json.loads(out.with_suffix(".backtest.json").read_text())), fields.transform


def run_local(root: Path, seed: int, epochs: int, transform: str = "auto") -> PanelBacktest:
    """The same WaveNet trained on each macrodata series alone (``transform``: each its default, or one for all),
    as one table."""
    steps, columns = macrodata()
    return PanelBacktest(tuple(run_one(root / f"macrodata-local-{transform}", name, steps, values, seed, epochs,
                                       transform)[0] for name, values in columns.items()))


def panel_lines(results: list[tuple[PanelBacktest, str]], local: list[PanelBacktest],
                local_transform: str = "auto") -> list[str]:
    """Per series and over all of them: MASE (and sMAPE) per method, the model's over the seeds, and
    the models trained one per series."""
    transform = results[0][1]
    lines = []
    names = [", ".join(b.columns) for b in results[0][0].series] + [f"mean of {len(results[0][0].series)}"]
    for i, name in enumerate(names):
        alone = [(p.series[i] if i < len(p.series) else p.overall).row("wavenet") for p in local]
        if alone:
            mase, smape = np.array([r.mase for r in alone]), np.array([r.smape for r in alone])
            how = "each its own" if local_transform == "auto" else local_transform
            lines.append(f"| macrodata: {name} | {how} | wavenet (one per series) | "
                         f"{spread(mase, 'wavenet')} | {spread(smape, 'wavenet')} | |")
        for method in [r.method for r in results[0][0].series[0].rows]:
            backtests = [(p.series[i] if i < len(p.series) else p.overall) for p, _ in results]
            rows = [b.row(method) for b in backtests]
            if rows[0].note and not np.isfinite(rows[0].mase):
                lines.append(f"| macrodata: {name} | {transform} | {method} | {rows[0].note} | | |")
                continue
            mase, smape = np.array([r.mase for r in rows]), np.array([r.smape for r in rows])
            cover = "" if rows[0].coverage is None else f"{np.mean([r.coverage for r in rows]):.0%}"
            lines.append(f"| macrodata: {name} | {transform} | {method} | {spread(mase, method)} | "
                         f"{spread(smape, method)} | {cover} |")
    return lines


def write(path: Path, steps, values) -> Path:
    path.write_text("step,value\n" + "".join(f"{s},{v:.4f}\n" for s, v in zip(steps, values)))
    return path


def run_one(root: Path, name: str, steps, values, seed: int, epochs: int,
            transform: str = "auto") -> tuple[Backtest, str]:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    train_csv = write(folder / "train.csv", steps[:-HORIZON], values[:-HORIZON])
    full_csv = write(folder / "full.csv", steps, values)
    run = folder / f"run-{seed}"
    assert main(["train", "wavenet_small", "--data", str(train_csv), "--epochs", str(epochs), "--seed", str(seed),
                 "--transform", transform, "--out", str(run), "--quiet", "--device", "cpu", "--threads", "1",
                 *MODEL]) == 0
    out = folder / f"forecast-{seed}.csv"
    assert main(["forecast", str(run / "best.pt"), "--data", str(full_csv), "--horizon", str(HORIZON),
                 "--backtest", "1", "--samples", "100", "--seed", str(seed), "--out", str(out)]) == 0
    fields = load_checkpoint(run / "best.pt").fields
    return Backtest.from_dict(json.loads(out.with_suffix(".backtest.json").read_text())), fields.transform


def spread(values: np.ndarray, method: str) -> str:
    """The mean over the seeds, and their range for the model (the baselines do not depend on the seed)."""
    if method != "wavenet":
        return f"{values.mean():.3f}"
    return f"{values.mean():.3f} ({values.min():.3f}-{values.max():.3f})"


def main_(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/bench_forecast")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--only", nargs="*", help="series names to run (default: all)")
    parser.add_argument("--no-local", action="store_true", help="macrodata: skip the models trained one per series")
    parser.add_argument("--local-transform", default="auto",
                        help="macrodata: the --transform of the models trained one per series (default: each its "
                             "own default; 'diff', the global model's, isolates the pooling)")
    args = parser.parse_args(argv)
    root = Path(args.out)
    lines = ["| series | transform (default) | method | MASE | sMAPE % | 80% coverage |",
             "|---|---|---|---:|---:|---:|"]
    if not args.only or "macrodata" in args.only:
        start = time.perf_counter()
        lines += panel_lines([run_panel(root, seed, args.epochs) for seed in range(args.seeds)],
                             [] if args.no_local else [run_local(root, seed, args.epochs, args.local_transform)
                                                       for seed in range(args.seeds)], args.local_transform)
        print(f"macrodata: {time.perf_counter() - start:.0f} s", flush=True)
    for name, (steps, values) in series().items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        results = [run_one(root, name, steps, values, seed, args.epochs) for seed in range(args.seeds)]
        transform = results[0][1]
        for method in [r.method for r in results[0][0].rows]:
            rows = [b.row(method) for b, _ in results]
            if rows[0].note and not np.isfinite(rows[0].mase):
                lines.append(f"| {name} | {transform} | {method} | {rows[0].note} | | |")
                continue
            mase = np.array([r.mase for r in rows])
            smape = np.array([r.smape for r in rows])
            cover = ("" if rows[0].coverage is None
                     else f"{np.mean([r.coverage for r in rows]):.0%}")
            lines.append(f"| {name} | {transform} | {method} | {spread(mase, method)} | {spread(smape, method)} | "
                         f"{cover} |")
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    print("\n".join(lines))
    (root / "table.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
