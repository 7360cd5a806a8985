"""Several series, one global model (issue 25): a long and a wide CSV trained as one univariate
WaveNet over the windows of every series, each series standardised by its own training part; the
forecast and backtest per series with the mean MASE; the --transform, --season, --id-column and
--wide options; bad input named with its series and rows; and the notebook display of forecasts and
generated audio.

The models are tiny WaveNets (receptive field 16) trained for a few epochs on short monthly series.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cnnzoo.checkpoint import SeriesFields, SeriesMember, load_checkpoint
from cnnzoo.cli import main
from cnnzoo.config import TrainConfig
from cnnzoo.errors import UserError
from cnnzoo.training import train
from cnnzoo.training.backtest import MODEL, SEASONAL_NAIVE, PanelBacktest
from cnnzoo.training.generation import Forecast, GeneratedAudio, PanelForecast, forecast_series
from cnnzoo.training.tasks import SequenceTask

TINY = ["--layers-per-stack", "4", "--stacks", "1", "--residual-channels", "8", "--gate-channels", "8",
        "--skip-channels", "16", "--quiet", "--device", "cpu", "--threads", "1"]
TINY_ARGS = {"layers_per_stack": 4, "stacks": 1, "residual_channels": 8, "gate_channels": 8, "skip_channels": 16}
# three stores of different scale and length: one model must serve all of them
STORES = {"north": (1.0, 144), "south": (3.0, 132), "east": (0.5, 120)}


def months(n: int, start: int = 1990) -> list[str]:
    return [f"{start + i // 12}-{i % 12 + 1:02d}" for i in range(n)]


def trend_and_season(n: int, seed: int = 0, noise: float = 0.3) -> np.ndarray:
    t = np.arange(n)
    return 20 + 0.15 * t + 5 * np.sin(2 * np.pi * t / 12) + noise * np.random.default_rng(seed).normal(size=n)


def write_long(path, stores=STORES):
    with open(path, "w") as f:
        f.write("store,month,sales\n")
        for i, (store, (scale, n)) in enumerate(stores.items()):
            for step, v in zip(months(n), scale * trend_and_season(n, seed=i)):
                f.write(f"{store},{step},{v:.4f}\n")
    return path


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("global")
    write_long(root / "stores.csv")
    assert main(["train", "wavenet_small", "--data", str(root / "stores.csv"), "--id-column", "store",
                 "--transform", "seasonal-diff", "--season", "12", "--epochs", "12", "--lr", "0.01",
                 "--window", "48", "--batch-size", "4", "--val-fraction", "0.17", "--out", str(root / "run"),
                 *TINY]) == 0
    return root


def test_a_long_file_trains_one_global_model_with_each_series_own_statistics(long_run, capsys):
    saved = load_checkpoint(long_run / "run" / "best.pt")
    fields = saved.fields
    assert isinstance(fields, SeriesFields) and saved.config.id_column == "store"
    assert (saved.config.transform, saved.config.season) == ("seasonal-diff", 12)
    assert (fields.transform, fields.season, fields.id_column) == ("seasonal-diff", 12, "store")
    assert fields.columns == ("sales",) and saved.model_args["in_channels"] == 1  # univariate, windows pooled
    assert [m.name for m in fields.members] == list(STORES)
    north, south = fields.members[0], fields.members[1]
    # each series' seasonal differences standardised on their own: south is 3 times north's scale
    assert south.std == pytest.approx(3 * north.std, rel=0.3)
    assert [m.length for m in fields.members] == [n for _, n in STORES.values()]
    assert len(north.tail) == 16 + 12 and north.last_steps[-1] == "2001-12"
    scores = PanelBacktest.from_dict(json.loads((long_run / "run" / "backtest.json").read_text()))
    assert [b.columns for b in scores.series] == [("north",), ("south",), ("east",)]
    assert all(b.season == 12 for b in scores.series)
    overall = scores.row(MODEL).mase
    assert overall == pytest.approx(np.mean([b.row(MODEL).mase for b in scores.series]))
    assert overall < scores.row(SEASONAL_NAIVE).mase * 2  # a learned model, not noise (both scale-free)


def test_the_global_model_forecasts_each_series_in_its_units(long_run, tmp_path, capsys):
    out = tmp_path / "next.csv"
    assert main(["forecast", str(long_run / "run" / "best.pt"), "--data", str(long_run / "stores.csv"),
                 "--horizon", "12", "--backtest", "1", "--samples", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "over all 3 series" in printed and "backtest of south on" in printed
    assert "forecast of 3 series (north, south, east)" in printed
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 36 and rows[0]["series"] == "north" and {"month", "sales", "sales_p90"} <= set(rows[0])
    by_series = {name: np.array([float(r["sales"]) for r in rows if r["series"] == name]) for name in STORES}
    assert [r["month"] for r in rows if r["series"] == "east"][0] == "2000-01"  # east is 120 months long
    for name, (scale, n) in STORES.items():  # each in its own units: near its own last year
        last_year = scale * trend_and_season(n, seed=list(STORES).index(name))[-12:]
        assert abs(by_series[name].mean() - last_year.mean()) < 0.5 * last_year.mean()
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    table = list(csv.DictReader(open(out.with_suffix(".backtest.csv"))))
    assert {r["series"] for r in table} == {"north", "south", "east", "overall"}

    one = tmp_path / "south.csv"
    assert main(["forecast", str(long_run / "run" / "best.pt"), "--series", "south", "--horizon", "6",
                 "--out", str(one)]) == 0  # from the tail the checkpoint kept
    assert {r["series"] for r in csv.DictReader(open(one))} == {"south"}

    forecasts = forecast_series(long_run / "run" / "best.pt", horizon=3)
    assert isinstance(forecasts, PanelForecast) and forecasts.names == list(STORES)
    assert isinstance(forecasts["east"], Forecast) and forecasts["east"].steps[0] == "2000-01"
    page = forecasts._repr_html_()
    assert "<table" in page and "data:image/png;base64," in page and "east" in page
    assert "PanelForecast(3 series" in repr(forecasts)


def test_a_wide_file_trains_one_global_model(tmp_path):
    n = 132
    values = trend_and_season(n)
    wide = tmp_path / "wide.csv"
    wide.write_text("month,north,south\n" + "".join(f"{s},{v:.4f},{2 * v + 10:.4f}\n"
                                                   for s, v in zip(months(n), values)))
    result = train(data=str(wide), wide=True, epochs=3, lr=0.01, window=48, batch_size=4, val_fraction=0.15,
                   out_dir=str(tmp_path / "run"), model="wavenet_small", model_args=TINY_ARGS, progress=False,
                   device="cpu", threads=1)
    assert result.best_epoch is not None
    fields = load_checkpoint(tmp_path / "run" / "best.pt").fields
    assert fields.columns == ("north", "south") and fields.id_column is None
    assert fields.transform == "seasonal-diff"  # auto: every series has the season
    forecasts = forecast_series(tmp_path / "run" / "best.pt", wide, horizon=4, series="south")
    assert forecasts.names == ["south"] and forecasts.forecasts[0].columns == ["value"]
    assert forecasts.forecasts[0].steps == ["2001-01", "2001-02", "2001-03", "2001-04"]


def test_the_series_options_round_trip_and_bad_values_exit_2(tmp_path, capsys):
    config = TrainConfig(model="wavenet_small", transform="log+diff", season=4, id_column="id", wide=False)
    assert TrainConfig.from_dict(config.to_dict()) == config
    member = SeriesMember("a", 1.0, 2.0, 30, 24, ("2000-01",), (1.0, 2.0))
    fields = SeriesFields(16, 48, 15, 24, ("sales",), "month", (), (), 30, 24, None, (), members=(member,))
    assert SeriesFields.from_dict(fields.to_dict()) == fields
    path = write_long(tmp_path / "stores.csv")
    common = ["train", "wavenet_small", "--data", str(path), "--id-column", "store", "--epochs", "1",
              "--out", str(tmp_path / "run"), *TINY]
    for argv, expected in [(["--transform", "logg"], "--transform 'logg'"),
                           (["--season", "1"], "--season must be a whole number of steps, 2 or more"),
                           (["--wide"], "give one"),
                           (["--columns", "sales,store"], "one value column")]:
        assert main([*common, *argv]) == 2
        assert expected in capsys.readouterr().err


def test_a_series_too_short_for_the_model_is_named_with_its_rows(tmp_path, capsys):
    path = write_long(tmp_path / "stores.csv", {"north": (1.0, 120), "tiny": (1.0, 40)})
    assert main(["train", "wavenet_small", "--data", str(path), "--id-column", "store", "--epochs", "1",
                 "--window", "32", "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "series 'tiny', rows 122 to 161 has 40 steps" in err and "receptive field of 16" in err

    gap = tmp_path / "gap.csv"
    gap.write_text("store,month,sales\n" + "".join(f"a,{m},1\n" for m in months(30) if m != "1990-05"))
    assert main(["train", "wavenet_small", "--data", str(gap), "--id-column", "store", "--epochs", "1",
                 "--out", str(tmp_path / "run2"), *TINY]) == 2
    assert "series 'a': row 6, column 'month': a gap" in capsys.readouterr().err


def test_bad_forecast_series_choices_exit_2(long_run, tmp_path, capsys):
    checkpoint, out = str(long_run / "run" / "best.pt"), str(tmp_path / "f.csv")
    assert main(["forecast", checkpoint, "--series", "west", "--horizon", "3", "--out", out]) == 2
    assert "not one the model learned; choose one of north, south, east" in capsys.readouterr().err
    other = write_long(tmp_path / "other.csv", {"north": (1.0, 60), "west": (1.0, 60)})
    assert main(["forecast", checkpoint, "--data", str(other), "--horizon", "3", "--out", out]) == 2
    assert "'west' were not learned by this model" in capsys.readouterr().err
    short = write_long(tmp_path / "short.csv", {"north": (1.0, 20)})
    assert main(["forecast", checkpoint, "--data", str(short), "--horizon", "3", "--out", out]) == 2
    assert "series 'north', rows 2 to 21 has 20 steps: the model reads 28" in capsys.readouterr().err


def test_resuming_with_other_series_and_series_flags_on_audio_are_refused(long_run, tmp_path, capsys):
    other = write_long(tmp_path / "other.csv", {"north": (1.0, 144), "west": (1.0, 144)})
    task = SequenceTask.load(TrainConfig(model="wavenet_small", data=str(other), id_column="store",
                                         transform="seasonal-diff", season=12, val_fraction=0.17))
    with pytest.raises(UserError, match="cannot resume: the run learned the series"):
        task.check_fields(load_checkpoint(long_run / "run" / "best.pt").fields)
    folder = tmp_path / "audio"
    folder.mkdir()
    assert main(["train", "wavenet_small", "--data", str(folder), "--season", "12", "--wide", "--out",
                 str(tmp_path / "run"), *TINY]) == 2
    assert "--season, --wide: for CSV series" in capsys.readouterr().err


def test_generated_audio_shows_a_player_in_a_notebook():
    t = np.arange(800) / 8000
    audio = GeneratedAudio(np.sin(2 * np.pi * 440 * t).astype(np.float32), np.zeros(800, np.int64), 8000, 1.0, 3,
                           0, 0.5, "wavenet_small")
    page = audio._repr_html_()
    assert "<audio controls" in page and "data:audio/wav;base64," in page
    assert "data:image/png;base64," in page and "0.10 s at 8000 Hz" in page
    assert repr(audio) == "GeneratedAudio(0.10 s at 8000 Hz, temperature 1, seed 3)"
