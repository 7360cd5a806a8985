"""Forecasts one can trust (issue 25): transforms for level and trend inverted exactly, the season
found from the step column, the default transform chosen from the training part, the backtest
table against naive, seasonal-naive and ETS, prediction intervals that hold their nominal share,
several series in one file, and bad input named with its row.

The models are tiny WaveNets (receptive field 16) trained for a few dozen one-step epochs.
"""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from cnnzoo.cli import main
from cnnzoo.data.series import read_panel_csv
from cnnzoo.data.series_transforms import Difference, Log, choose_transform, detect_season, parse_transform, relevel
from cnnzoo.errors import UserError
from cnnzoo.training import train
from cnnzoo.training.backtest import ETS, MODEL, NAIVE, SEASONAL_NAIVE, Backtest, errors, mase_scale, run_backtest
from cnnzoo.training.generation import forecast_series

TINY = ["--layers-per-stack", "4", "--stacks", "1", "--residual-channels", "8", "--gate-channels", "8",
        "--skip-channels", "16", "--quiet", "--device", "cpu", "--threads", "1"]
TINY_ARGS = {"layers_per_stack": 4, "stacks": 1, "residual_channels": 8, "gate_channels": 8, "skip_channels": 16}


def months(n: int, start: int = 1990) -> list[str]:
    return [f"{start + i // 12}-{i % 12 + 1:02d}" for i in range(n)]


def write_series(path, values, steps=None, column="sales", step_column="month"):
    steps = steps or months(len(values))
    path.write_text(f"{step_column},{column}\n" + "".join(f"{s},{v:.5f}\n" for s, v in zip(steps, values)))
    return path


def trend_and_season(n: int, seed: int = 0, noise: float = 0.3) -> np.ndarray:
    t = np.arange(n)
    return 20 + 0.15 * t + 5 * np.sin(2 * np.pi * t / 12) + noise * np.random.default_rng(seed).normal(size=n)


# --- transforms ---
@pytest.mark.parametrize("name", ["none", "log", "diff", "seasonal-diff", "log+diff", "log+seasonal-diff",
                                  "seasonal-diff+diff", "log+seasonal-diff+diff", "window-mean", "diff+window-last"])
def test_every_transform_is_inverted_exactly(name):
    values = trend_and_season(120)[None] + np.array([[0.0], [3.0]])  # two columns, positive
    transform = parse_transform(name, season=12)
    changed = transform.apply(values)
    assert changed.shape == (2, 120 - transform.lag)
    h = 24
    np.testing.assert_allclose(transform.invert(changed[:, -h:], values[:, :-h]), values[:, -h:], rtol=1e-12)
    # sample paths [N, C, H] invert as one batch, each against the same history
    paths = np.stack([changed[:, -h:], changed[:, -h:] + 0.0])
    np.testing.assert_allclose(transform.invert(paths, values[:, :-h])[1], values[:, -h:], rtol=1e-12)
    assert parse_transform(transform.name, 12) == transform


def test_transform_names_are_checked():
    for bad, message in [("logg", "choose 'auto' or 'none'"), ("none+log", "cannot be combined"),
                         ("diff+diff", "twice"), ("seasonal-diff", "needs a season")]:
        with pytest.raises(UserError, match=message):
            parse_transform(bad, season=1)
    with pytest.raises(UserError, match="above 0"):
        Log().apply(np.array([[1.0, 0.0]]))


def test_the_season_comes_from_the_step_column():
    assert detect_season(months(30)) == 12
    assert detect_season([f"2001-{m:02d}-01" for m in (1, 4, 7, 10)]) == 4
    assert detect_season([f"2001-01-{d:02d}" for d in range(1, 20)]) == 7
    assert detect_season([f"2001-{1 + d // 28:02d}-{1 + d % 28:02d}" for d in range(0, 140, 7)]) == 52
    assert detect_season(["1700", "1701", "1702"]) == 1 and detect_season(None) == 1


def test_the_default_transform_follows_the_training_part():
    rng = np.random.default_rng(0)
    t = np.arange(240)
    seasonal = choose_transform(trend_and_season(240)[None], season=12)
    assert seasonal.steps == (Difference(12),) and "season of 12" in seasonal.reason
    trend = choose_transform((5 + 0.2 * t + rng.normal(size=240))[None], season=1)
    assert trend.steps == (Difference(1),) and "trend" in trend.reason
    growth = (100 * 1.01 ** t * (1 + 0.2 * np.sin(2 * np.pi * t / 12)))[None]  # airline-like: the swing grows
    assert choose_transform(growth, season=12).steps == (Log(), Difference(12))
    ar = np.zeros(240)
    for i in range(1, 240):
        ar[i] = 0.5 * ar[i - 1] + rng.normal()
    stationary = choose_transform(ar[None] + 10, season=1)
    assert stationary.steps == () and stationary.name == "none"


# --- the backtest and its measures ---
def test_measures_by_hand():
    history = np.array([[1.0, 2.0, 4.0, 3.0]])
    actual, forecast = np.array([[4.0, 6.0]]), np.array([[5.0, 5.0]])
    scale = mase_scale(history, 1)  # in-sample naive MAE: (1 + 2 + 1) / 3
    scores = errors(actual, forecast, scale)
    assert scores["mae"][0] == pytest.approx(1.0) and scores["mse"][0] == pytest.approx(1.0)
    assert scores["mase"][0] == pytest.approx(1.0 / (4 / 3))
    assert scores["smape"][0] == pytest.approx(100 * (2 / 9 + 2 / 11) / 2)  # M4's sMAPE: 2|e| / (|y| + |f|)


class Oracle:
    """Forecasts with the generating process: the known seasonal mean, paths with its known noise."""

    receptive_field = 1

    def __init__(self, noise: float, bias: float = 0.0):
        self.noise, self.bias = noise, bias

    def __call__(self, history, horizon, *, samples=0, temperature=1.0, seed=0):
        t = np.arange(history.shape[-1], history.shape[-1] + horizon)
        mean = (10 + 5 * np.sin(2 * np.pi * t / 12))[None] + self.bias
        paths = None
        if samples:
            paths = mean + self.noise * np.random.default_rng(seed).normal(size=(samples, 1, horizon))
        return mean, paths


def test_the_baseline_table_and_its_verdict(tmp_path):
    n = 240
    t = np.arange(n)
    values = (10 + 5 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(1).normal(size=n))[None]
    scores = run_backtest(values, Oracle(1.0), horizon=12, origins=4, season=12, samples=400, columns=["y"],
                          source="sine.csv")
    assert [r.method for r in scores.rows] == [MODEL, NAIVE, SEASONAL_NAIVE, ETS]
    model, naive, seasonal = scores.row(MODEL), scores.row(NAIVE), scores.row(SEASONAL_NAIVE)
    assert model.mase < seasonal.mase < naive.mase and model.smape < naive.smape
    assert model.rmse >= model.mae
    assert scores.row(ETS).mase < naive.mase  # statsmodels is installed with the dev extra
    # the oracle's 80 % band, from 400 paths over 48 steps, holds about 80 % (binomial sd 6 %)
    assert abs(model.coverage - 0.8) < 0.15
    text = scores.table()
    assert "seasonal naive" in text and "MASE" in text and "sMAPE" in text and "4 origins x 12 steps" in text
    assert scores.verdict().startswith("better than seasonal naive")
    written = scores.save(tmp_path / "backtest.csv")
    assert Backtest.from_dict(json.loads(written[1].read_text())) == scores
    assert next(csv.DictReader(open(written[0])))["method"] == MODEL

    worse = run_backtest(values, Oracle(1.0, bias=6.0), horizon=12, origins=2, season=12, columns=["y"])
    assert worse.verdict().startswith("WORSE than seasonal naive") and worse.row(MODEL).coverage is None


def test_a_series_too_short_for_the_backtest_is_refused():
    with pytest.raises(UserError, match="needs 37, 13 of them"):
        run_backtest(np.ones((1, 30)), Oracle(1.0), horizon=12, origins=2, season=12)
    Oracle.receptive_field = 16
    try:
        with pytest.raises(UserError, match="receptive field of 16"):
            run_backtest(np.ones((1, 30)), Oracle(1.0), horizon=20, origins=1, season=12)
    finally:
        Oracle.receptive_field = 1


# --- a WaveNet on a trend and a season ---
@pytest.fixture(scope="module")
def trend_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("trend")
    write_series(root / "trend.csv", trend_and_season(300))
    assert main(["train", "wavenet_small", "--data", str(root / "trend.csv"), "--epochs", "30", "--lr", "0.01",
                 "--window", "64", "--batch-size", "4", "--val-fraction", "0.08", "--out", str(root / "run"),
                 *TINY]) == 0
    return root


def test_a_trend_and_a_season_are_forecast_better_than_seasonal_naive(trend_run, tmp_path, capsys):
    out = tmp_path / "forecast.csv"
    assert main(["forecast", str(trend_run / "run" / "best.pt"), "--data", str(trend_run / "trend.csv"),
                 "--horizon", "24", "--backtest", "2", "--samples", "50", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "better than seasonal naive" in printed and "ets" in printed
    scores = Backtest.from_dict(json.loads(out.with_suffix(".backtest.json").read_text()))
    assert scores.season == 12 and scores.origins == 2
    assert scores.row(MODEL).mase < 1 and scores.row(MODEL).mase < scores.row(SEASONAL_NAIVE).mase
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 24 and rows[0]["month"] == "2015-01"
    assert {"sales", "sales_p10", "sales_p50", "sales_p90"} <= set(rows[0])
    low, high = (np.array([float(r[c]) for r in rows]) for c in ("sales_p10", "sales_p90"))
    assert (low <= high).all()
    # the level goes on rising: the last year forecast sits above the last year seen
    assert np.mean([float(r["sales"]) for r in rows[12:]]) > trend_and_season(300)[-12:].mean()
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_chose_the_transform_kept_it_and_backtested(trend_run):
    from cnnzoo.checkpoint import load_checkpoint

    saved = load_checkpoint(trend_run / "run" / "best.pt")
    assert saved.fields.transform == "seasonal-diff" and saved.fields.season == 12
    assert saved.config.patience is not None  # early stopping is on by default for a series
    assert len(saved.fields.tail[0]) == 16 + 12  # a receptive field, and the season the differences consume
    scores = Backtest.from_dict(json.loads((trend_run / "run" / "backtest.json").read_text()))
    assert scores.horizon == 24 and scores.row(MODEL).mase < scores.row(NAIVE).mase
    # from the checkpoint alone, the forecast continues the training series in the CSV's units
    alone = forecast_series(trend_run / "run" / "best.pt", horizon=12)
    assert alone.steps[0] == "2015-01" and 50 < alone.values.mean() < 80


# --- intervals on a series with known noise ---
def test_sampled_intervals_hold_about_their_nominal_share(tmp_path, capsys):
    n, noise = 480, 1.0
    t = np.arange(n)
    values = 10 + 5 * np.sin(2 * np.pi * t / 12) + noise * np.random.default_rng(3).normal(size=n)
    write_series(tmp_path / "noisy.csv", values)
    result = train(data=str(tmp_path / "noisy.csv"), epochs=25, lr=0.01, window=64, batch_size=4, val_fraction=0.1,
                   out_dir=str(tmp_path / "run"), model="wavenet_small", model_args=TINY_ARGS, progress=True,
                   device="cpu", threads=1)
    assert result.best_epoch is not None
    printed = capsys.readouterr().out  # training ends with the backtest of its held-out end
    assert "backtest of sales on noisy.csv: 1 origin x 48 steps, season 12" in printed
    assert "than seasonal naive (repeat the last season): MASE" in printed
    forecast = forecast_series(tmp_path / "run" / "best.pt", tmp_path / "noisy.csv", horizon=12, samples=100,
                               backtest=4)
    coverage = forecast.backtest.row(MODEL).coverage
    assert coverage is not None and 0.6 <= coverage <= 0.95  # nominal 0.8; 48 steps scored


# --- several series in one file ---
def test_long_and_wide_files_give_one_series_each(tmp_path):
    long = tmp_path / "long.csv"
    with open(long, "w") as f:
        f.write("store,month,sales\n")
        for store, scale in (("north", 1.0), ("south", 3.0)):
            for step, v in zip(months(36), trend_and_season(36)):
                f.write(f"{store},{step},{scale * v:.3f}\n")
    north, south = read_panel_csv(long, id_column="store")
    assert (north.name, south.name) == ("north", "south") and north.values.shape == (1, 36)
    np.testing.assert_allclose(south.values, 3 * north.values, rtol=1e-4)
    assert north.steps[:2] == ["1990-01", "1990-02"] and north.step_column == "month"

    wide = tmp_path / "wide.csv"
    wide.write_text("month,north,south\n" + "".join(f"{s},{v:.3f},{3 * v:.3f}\n"
                                                   for s, v in zip(months(36), trend_and_season(36))))
    series = read_panel_csv(wide)
    assert [s.name for s in series] == ["north", "south"] and series[1].values.shape == (1, 36)
    assert [s.name for s in read_panel_csv(wide, columns=["south"])] == ["south"]


@pytest.mark.parametrize("body, expected", [
    ("store,month,sales\na,1990-01,1\na,1990-02,2\na,1990-04,3\nb,1990-01,1\n",
     r"series 'a': row 4, column 'month': a gap in the time column \('1990-02' then '1990-04'"),
    ("store,month,sales\na,1990-01,1\na,1990-02,x\na,1990-03,3\n", r"row 3, column 'sales': 'x' is not a number"),
    ("store,month,sales\na,1990-01,1\na,1990-03,2\na,1990-02,3\na,1990-04,3\n", r"row 4, .*out of order"),
    ("store,month,sales,stock\na,1990-01,1,2\n", r"2 value columns .*name the value column"),
])
def test_bad_long_files_are_named_with_their_row(tmp_path, body, expected):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(UserError, match=expected):
        read_panel_csv(path, id_column="store")


def test_a_gap_in_a_wide_file_names_its_row(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("year,a,b\n2000,1,2\n2001,1,2\n2003,1,2\n2004,1,2\n")
    with pytest.raises(UserError, match=r"row 4, column 'year': a gap"):
        read_panel_csv(path)
    assert math.isfinite(read_panel_csv(path, step_column=None)[0].values.sum())


def test_a_forecast_shows_its_table_backtest_and_plot_in_a_notebook(trend_run):
    forecast = forecast_series(trend_run / "run" / "best.pt", trend_run / "trend.csv", horizon=6, samples=20,
                               backtest=1)
    page = forecast._repr_html_()
    assert "<table" in page and "sales_p90" in page and "seasonal naive" in page
    assert "data:image/png;base64," in page and "transform" in page
    assert "seasonal-diff" in repr(forecast) and "80 % intervals from 20 paths" in repr(forecast)


def test_a_window_level_is_taken_from_the_past_a_forecast_would_see():
    windows = torch.arange(24, dtype=torch.float32).reshape(2, 1, 12)
    for level, expected in (("mean", windows[..., :4].mean(-1, keepdim=True)), ("last", windows[..., 3:4])):
        x, base = relevel(windows, level, known=4)
        torch.testing.assert_close(base, expected)
        torch.testing.assert_close(x + base, windows)  # put back exactly
    assert relevel(windows, None, 4) == (windows, 0)


def test_bad_forecast_options_exit_2_with_a_clear_message(trend_run, tmp_path, capsys):
    checkpoint, out = str(trend_run / "run" / "best.pt"), str(tmp_path / "f.csv")
    for argv, expected in [(["--backtest", "2"], "--backtest needs --data"),
                           (["--samples", "-1"], "--samples and --backtest take 0 or more"),
                           (["--data", str(trend_run / "trend.csv"), "--backtest", "30"], "use fewer --backtest")]:
        assert main(["forecast", checkpoint, "--horizon", "12", "--out", out, *argv]) == 2
        assert expected in capsys.readouterr().err
