"""``cnnzoo generate`` and ``cnnzoo forecast`` on checkpoints trained here, and WaveNet in
``cnnzoo summary`` and ``cnnzoo sweep``: files of the right length, rate and steps, sampling made
explicit, and clear errors for what does not fit.

The checkpoints come from tiny runs (receptive field 16) on generated data, the series one through
``cnnzoo train`` and long enough (40 one-step epochs) to carry its series' period.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from cnnzoo.checkpoint import load_checkpoint
from cnnzoo.cli import main
from cnnzoo.data.series import continue_steps
from cnnzoo.profiling import summary
from cnnzoo.profiling.sweep import depth_sweep
from cnnzoo.training import train
from cnnzoo.training.generation import forecast_series, generate_audio

RATE = 8000
PERIOD = 12
TINY_ARGS = {"layers_per_stack": 4, "stacks": 1, "residual_channels": 8, "gate_channels": 8, "skip_channels": 16}
API_TINY = dict(model="wavenet_small", model_args=TINY_ARGS, progress=False, device="cpu", threads=1)


def period_of(signal: np.ndarray, shortest: int, longest: int) -> int:
    """The lag in [shortest, longest) with the highest autocorrelation."""
    signal = signal - signal.mean()
    scores = [float((signal[:-lag] * signal[lag:]).mean()) for lag in range(shortest, longest)]
    return shortest + int(np.argmax(scores))


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    t = np.arange(RATE) / RATE
    tone = (0.4 * np.sin(2 * np.pi * 250 * t) + 0.1 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)
    soundfile.write(root / "tone.wav", tone, RATE, subtype="PCM_16")
    train(data=str(root / "tone.wav"), epochs=2, out_dir=str(root / "run"), **API_TINY)
    return root


@pytest.fixture(scope="module")
def series_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("series")
    n = 360
    values = 50 + 20 * np.sin(2 * np.pi * np.arange(n) / PERIOD)
    rows = [f"{2000 + i // 12}-{i % 12 + 1:02d},{v:.3f}" for i, v in enumerate(values)]
    (root / "series.csv").write_text("month,sales\n" + "\n".join(rows) + "\n")
    assert main(["train", "wavenet_small", "--data", str(root / "series.csv"), "--epochs", "40", "--lr", "0.01",
                 "--window", "96", "--batch-size", "2", "--out", str(root / "run"), "--quiet", "--device", "cpu",
                 "--threads", "1", "--layers-per-stack", "4", "--stacks", "1", "--residual-channels", "8",
                 "--gate-channels", "8", "--skip-channels", "16"]) == 0
    return root


# --- generate ---
def test_generate_writes_a_wav_of_the_right_length_and_rate(audio_run, tmp_path, capsys):
    out = tmp_path / "babble.wav"
    assert main(["generate", str(audio_run / "run" / "best.pt"), "--seconds", "0.25", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sampling at temperature 1, seed 0" in printed and "incremental path" in printed
    info = soundfile.info(str(out))
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (RATE, 2000, 1, "PCM_16")
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically

    assert main(["generate", str(audio_run / "run" / "best.pt"), "--seconds", "0.01", "--temperature", "0",
                 "--out", str(tmp_path / "argmax.wav"), "--no-plot"]) == 0
    assert "argmax" in capsys.readouterr().out and not (tmp_path / "argmax.png").exists()


def test_generation_is_a_function_of_the_seed_and_continues_seed_audio(audio_run):
    checkpoint = load_checkpoint(audio_run / "run" / "best.pt")
    a = generate_audio(checkpoint, 0.02, seed=1)
    b = generate_audio(checkpoint, 0.02, seed=1)
    c = generate_audio(checkpoint, 0.02, seed=2)
    assert np.array_equal(a.classes, b.classes) and not np.array_equal(a.classes, c.classes)
    assert a.signal.dtype == np.float32 and np.abs(a.signal).max() <= 1
    seeded = generate_audio(checkpoint, 0.02, seed_audio=audio_run / "tone.wav", temperature=0.5)
    assert seeded.seed_samples == RATE and len(seeded.signal) == 160


def test_checkpoints_of_the_previous_release_still_generate_and_forecast():
    fixtures = Path(__file__).parent / "fixtures"  # version 1, written by 1a749b9 (make_v1_checkpoints.py)
    audio = generate_audio(fixtures / "v1-audio-best.pt", 0.01, seed=1)
    assert audio.sample_rate == RATE and len(audio.signal) == 80 and np.abs(audio.signal).max() <= 1
    forecast = forecast_series(fixtures / "v1-series-best.pt", horizon=3)  # the tail the checkpoint kept
    assert forecast.steps == ["2010-01", "2010-02", "2010-03"] and np.isfinite(forecast.values).all()


def test_forecast_writes_the_csv_with_continuing_steps_and_a_png(series_run, tmp_path, capsys):
    out = tmp_path / "forecast.csv"
    assert main(["forecast", str(series_run / "run" / "best.pt"), "--data", str(series_run / "series.csv"),
                 "--horizon", "36", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "point forecast" in printed and "2030-01 to 2032-12" in printed
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["month", "sales"] and len(rows) == 36
    assert [r["month"] for r in rows[:2]] == ["2030-01", "2030-02"] and rows[-1]["month"] == "2032-12"
    values = np.array([float(r["sales"]) for r in rows])
    assert np.isfinite(values).all() and 25 < values.mean() < 75  # in the CSV's units, not standardised
    assert period_of(values, PERIOD // 2, 2 * PERIOD) == PERIOD  # it carries the series' period on...
    truth = 50 + 20 * np.sin(2 * np.pi * np.arange(360, 396) / PERIOD)
    assert np.abs(values - truth).mean() < 3  # ...and its shape (the swing is +-20)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_forecast_from_the_checkpoint_alone_continues_the_training_series(series_run):
    from_csv = forecast_series(series_run / "run" / "best.pt", series_run / "series.csv", horizon=5)
    alone = forecast_series(series_run / "run" / "best.pt", horizon=5)
    assert alone.steps == from_csv.steps == ["2030-01", "2030-02", "2030-03", "2030-04", "2030-05"]
    assert np.allclose(alone.values, from_csv.values, atol=1e-4)  # the kept tail is a receptive field


def test_steps_continue_numbers_months_and_dates():
    assert continue_steps(["1700.0", "1701.0"], 2) == ["1702.0", "1703.0"]
    assert continue_steps(["7", "9"], 2) == ["11", "13"]
    assert continue_steps(["2000-11", "2000-12"], 2) == ["2001-01", "2001-02"]
    assert continue_steps(["2020-01-31", "2020-02-29"], 2) == ["2020-03-31", "2020-04-30"]  # month ends
    assert continue_steps(["2020-01-01", "2020-01-08"], 1) == ["2020-01-15"]  # weekly
    assert continue_steps(["2020-01-01 23:00:00", "2020-01-02 00:00:00"], 1) == ["2020-01-02 01:00:00"]
    assert continue_steps(["a", "b"], 2) == ["b+1", "b+2"]


def test_bad_checkpoints_and_arguments_exit_2_with_a_clear_message(audio_run, series_run, tmp_path, capsys):
    image = tmp_path / "image.pt"
    torch.save({"format": "cnnzoo-checkpoint", "version": 1, "model_name": "resnet18", "model_args": {},
                "model_state": {}, "task": "image", "class_names": ["a", "b"]}, image)  # as an older release wrote it
    (tmp_path / "other.csv").write_text("month,units\n2000-01,1\n2000-02,2\n")
    audio_ckpt, series_ckpt = str(audio_run / "run" / "best.pt"), str(series_run / "run" / "best.pt")
    wav, table = ["--out", str(tmp_path / "x.wav")], ["--out", str(tmp_path / "x.csv")]
    cases = [
        (["generate", str(image), "--seconds", "1", *wav], "task 'image'"),
        (["forecast", str(image), "--horizon", "3", *table], "task 'image'"),
        (["generate", series_ckpt, "--seconds", "1", *wav], "use `cnnzoo forecast`"),
        (["forecast", audio_ckpt, "--horizon", "3", *table], "use `cnnzoo generate`"),
        (["forecast", series_ckpt, "--horizon", "0", *table], "--horizon must be"),
        (["forecast", series_ckpt, "--horizon", "3", "--data", str(tmp_path / "other.csv"), *table],
         "has no column 'sales'"),
        (["generate", audio_ckpt, "--seconds", "0", *wav], "--seconds must be"),
        (["generate", audio_ckpt, "--seconds", "1", "--temperature", "-1", *wav], "--temperature"),
        (["generate", audio_ckpt, "--seconds", "1", "--condition", "1", *wav], "not conditioned"),
        (["generate", audio_ckpt, "--seconds", "1", "--seed-audio", str(tmp_path / "none.wav"), *wav],
         "cannot read the seed audio"),
        (["generate", str(tmp_path / "missing.pt"), "--seconds", "1", *wav], "does not exist"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        assert expected in capsys.readouterr().err, argv
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "x.csv").exists()


# --- summary and sweep ---
def test_summary_feeds_classes_and_reports_the_receptive_field(capsys):
    counted = summary("wavenet_small")
    assert counted.rows[0].output_shape == [1, 2048]  # μ-law classes, not a float image
    assert any(r.type == "Embedding" for r in counted.rows)
    assert counted.receptive_field == 511 and counted.sample_rate == 8000
    assert counted.macs_per_sample == 196_608  # WaveNetConfig.macs_per_sample, counted op by op
    assert main(["summary", "wavenet"]) == 0
    printed = capsys.readouterr().out
    assert "Receptive field: 3,070 samples = 191.9 ms at 16,000 Hz" in printed
    assert "MACs per sample (one output step): 1,038,336" in printed
    continuous = summary("wavenet_small", output="continuous", in_channels=3)
    assert continuous.rows[0].output_shape == [1, 3, 2048] and continuous.sample_rate is None


def test_depth_sweep_receptive_field_exponential_parameters_linear(tmp_path, capsys):
    cells = depth_sweep("wavenet", [4, 6, 8, 10])
    fields = [c.receptive_field for c in cells]
    assert fields == [3 * (2 ** n - 1) + 1 for n in (4, 6, 8, 10)]  # three stacks of 1, 2, ..., 2**(n-1)
    params = [c.params for c in cells]
    steps = np.diff(params)
    assert (steps > 0).all() and len(set(steps.tolist())) == 1  # the same parameters for every added layer
    assert all(b.receptive_field / a.receptive_field > 3.9 for a, b in zip(cells, cells[1:]))  # two layers: x4

    out = tmp_path / "sweep"
    assert main(["sweep", "wavenet_small", "--layers-per-stack", "2,4,6", "--stacks", "1,2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| layers per stack | stacks | layers | receptive field (samples) |" in printed
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "sweep.csv").read_text().count("\n") == 7
    assert main(["sweep", "wavenet", "--width-mult", "0.5"]) == 2
    assert "--layers-per-stack" in capsys.readouterr().err
    assert main(["sweep", "mobilenet_v1", "--layers-per-stack", "4"]) == 2
    assert "for WaveNet" in capsys.readouterr().err
