"""Forecast a CSV series with a WaveNet trained on it (``cnnzoo train wavenet_small --data series.csv``).

examples:
  cnnzoo forecast runs/wavenet_small-sunspots/best.pt --data sunspots.csv --horizon 30 --out forecast.csv
  cnnzoo forecast best.pt --horizon 12 --out next_year.csv          # continue the training CSV itself
  cnnzoo forecast best.pt --data sales.csv --horizon 12 --temperature 1 --seed 2 --out path.csv
  cnnzoo forecast best.pt --data sales.csv --horizon 12 --samples 200 --backtest 3 --out next.csv
  cnnzoo forecast runs/wavenet_small-stores/best.pt --data stores.csv --horizon 12 --out stores_next.csv
  cnnzoo forecast runs/wavenet_small-stores/best.pt --series north --horizon 12 --out north.csv

The forecast follows the model's predicted mean step by step (a point forecast), each prediction fed
back as the next input; --temperature above 0 draws one sample path instead. --samples N draws N
sample paths besides, for the 10th, 50th and 90th percentiles (in the CSV, shaded in the plot).
--backtest K first forecasts the last K horizons of the --data series from rolling origins and
prints their errors (MAE, RMSE, MASE, sMAPE) next to the naive, seasonal-naive and ETS forecasts,
with one line saying whether the model beats seasonal naive; the table goes beside the CSV. The CSV needs the
columns the model was trained on (and its step column, which the forecast's steps continue: numbers by
their last difference, dates by months or by their last interval). Writes the forecast as CSV and a PNG
of history and forecast beside it.

A global model of several series (trained with --id-column or --wide) forecasts each of them, or the
one --series names: the CSV then has a series column, the PNG a panel per series, and the backtest a
table per series and the mean MASE over all.
"""
from __future__ import annotations

import argparse

from cnnzoo.cli.common import add_generation_arguments
from cnnzoo.training.generation import forecast_series, sampling_description

HELP = "forecast a CSV series with a WaveNet checkpoint (CSV with continuing steps + PNG)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .pt file written by `cnnzoo train` for a WaveNet on a CSV series")
    parser.add_argument("--data", metavar="CSV", help="the series to continue (default: the end of the training "
                                                      "CSV, kept in the checkpoint)")
    parser.add_argument("--horizon", type=int, required=True, help="steps to forecast")
    parser.add_argument("--out", required=True, metavar="CSV", help="the CSV file to write (a PNG goes beside it)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="0: the predicted means (default); above 0: one sample path at this temperature")
    parser.add_argument("--samples", type=int, default=0, metavar="N",
                        help="sample paths for the 10th/50th/90th percentiles (default 0: none)")
    parser.add_argument("--backtest", type=int, default=0, metavar="K",
                        help="score K rolling-origin forecasts of the series' end against the naive, "
                             "seasonal-naive and ETS baselines (needs --data)")
    parser.add_argument("--season", type=int, metavar="N",
                        help="the seasonal period for the seasonal baseline and MASE (default: the model's)")
    parser.add_argument("--series", metavar="NAME",
                        help="a global model of several series: forecast this one only (default: all)")
    add_generation_arguments(parser, "CSV")


def run(args: argparse.Namespace) -> int:
    forecast = forecast_series(args.checkpoint, args.data, horizon=args.horizon, temperature=args.temperature,
                               seed=args.seed, condition=args.condition, samples=args.samples,
                               backtest=args.backtest, season=args.season, series=args.series, device=args.device,
                               threads=args.threads)
    written = forecast.save(args.out, plot=not args.no_plot)
    if forecast.backtest is not None:
        print(forecast.backtest.table())
        print(forecast.backtest.verdict())
    print(sampling_description(forecast.temperature, "series") + (
        f"; 10th/50th/90th percentiles of {forecast.samples} sample paths" if forecast.samples else ""))
    print(forecast.summary())
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
