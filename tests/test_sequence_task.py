"""The sequence task: WaveNet trained by the same loop as the image models, on audio folders and CSV
series, through ``cnnzoo train``: the data decides the output, defaults, validation at the end of
every signal, metrics, checkpoints, exact resume, time budget, and clear errors.

Tiny runs: a WaveNet of receptive field 16 (4 layers of 8 channels), a second of generated 8 kHz
audio per file and a 300-step monthly CSV, all written into tmp_path.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch

from cnnzoo.cli import main
from cnnzoo.errors import UserError
from cnnzoo.registry import get_model_info
from cnnzoo.training import TrainConfig, load_checkpoint, resolved_config, train
from cnnzoo.training.tasks import TASKS, AudioTask, SequenceTask, SeriesTask, task_for_model
from cnnzoo.training.tasks import series as series_task
from cnnzoo.training.tasks import windowed as sequence_task

RATE = 8000
TINY_ARGS = {"layers_per_stack": 4, "stacks": 1, "residual_channels": 8, "gate_channels": 8, "skip_channels": 16}
CLI_TINY = ["--layers-per-stack", "4", "--stacks", "1", "--residual-channels", "8", "--gate-channels", "8",
            "--skip-channels", "16", "--quiet", "--device", "cpu", "--threads", "1"]
API_TINY = dict(model="wavenet_small", model_args=TINY_ARGS, progress=False, device="cpu", threads=1)


def voiced(seconds: float, f0: float, seed: int = 0) -> np.ndarray:
    """A periodic, speech-like signal: a few harmonics of ``f0``, a slow amplitude swell, a little noise."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5)) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))
    x = 0.45 * x / np.abs(x).max() + 0.005 * np.random.default_rng(seed).standard_normal(n)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    for i, f0 in enumerate((200.0, 250.0)):
        soundfile.write(folder / f"voice{i}.wav", voiced(1.0, f0, i), RATE, subtype="PCM_16")
    return folder


def monthly_csv(path, n: int = 300, period: int = 12):
    t = np.arange(n)
    values = 20 + 8 * np.sin(2 * np.pi * t / period) + 0.3 * np.random.default_rng(0).standard_normal(n)
    rows = [f"{2000 + i // 12}-{i % 12 + 1:02d},{v:.3f},{i % 7}" for i, v in enumerate(values)]
    path.write_text("month,sales,weekday\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory):
    return monthly_csv(tmp_path_factory.mktemp("series") / "sales.csv")


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_registered_for_the_wavenets():
    assert TASKS["sequence"] is SequenceTask and task_for_model("wavenet_small") is SequenceTask


def test_audio_trains_through_the_cli_with_every_artefact(audio_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "wavenet_small", "--data", str(audio_dir), *CLI_TINY, "--epochs", "8", "--lr", "0.01",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "best validation" in printed and "windows/s training" in printed  # a window is what it counts
    for name in ("best.pt", "last.pt", "history.csv", "history.json", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "history.json").read_text())
    epochs, config = saved["epochs"], saved["config"]
    assert [e["epoch"] for e in epochs] == list(range(1, 9))
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] - 0.5  # nats: from about ln(256) = 5.5
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"]
    assert all(0 <= e["val_acc"] <= 1 for e in epochs) and "train_windows_per_s" in epochs[0]
    # defaults: AdamW, cosine; a window of four receptive fields (16 -> 60 -> 256); image options neutral
    assert (config["optimizer"], config["schedule"], config["window"]) == ("adamw", "cosine", 256)
    assert (config["label_smoothing"], config["augment"], config["channels_last"]) == (0.0, "none", False)
    assert config["sample_rate"] == RATE and config["model_args"]["output"] == "mulaw"

    best = load_checkpoint(out / "best.pt")  # weights_only inside
    assert best.task == "sequence" and best.monitor == "val_loss"
    fields = best.fields
    assert sequence_task.OUTPUTS[type(fields)] == "mulaw" and fields.sample_rate == RATE and fields.quantization == 256
    assert fields.receptive_field == 16 and fields.window == 256 and list(fields.files) == ["voice0.wav",
                                                                                             "voice1.wav"]


def test_csv_trains_the_continuous_output_standardised_by_the_training_part(series_csv, tmp_path):
    result = train(data=str(series_csv), columns="sales", epochs=3, out_dir=str(tmp_path), **API_TINY)
    history = result.history_rows
    assert result.monitor == "val_loss" and {"train_mae", "val_mae"} <= set(history[0])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    saved = load_checkpoint(tmp_path / "last.pt")
    fields = saved.fields
    values = np.loadtxt(series_csv, delimiter=",", skiprows=1, usecols=1)
    boundary = fields.boundary
    assert boundary == 240 and fields.length == 300  # the last 20 % validates
    # a yearly season in a monthly file: trained on the seasonal differences (issue 25), standardised
    # by the training part's; the first season has no year before it
    assert (fields.transform, fields.season) == ("seasonal-diff", 12)
    differences = values[12:boundary] - values[:boundary - 12]
    assert fields.mean[0] == pytest.approx(differences.mean(), abs=1e-4)
    assert fields.std[0] == pytest.approx(differences.std(), rel=1e-4)
    assert list(fields.columns) == ["sales"] and fields.step_column == "month"
    assert list(fields.last_steps) == ["2024-10", "2024-11", "2024-12"]
    # the last receptive field, and the season the differences consume
    assert np.allclose(np.asarray(fields.tail)[0], values[-16 - 12:], atol=1e-3)
    assert saved.model_args["output"] == "continuous" and saved.model_args["in_channels"] == 1
    # the MAE is in the series' units: of the order of its noise (0.3) to its swing (8), not of 1
    assert 0.1 < history[-1]["val_mae"] < 8


def test_defaults_follow_the_data_and_the_model(series_csv, audio_dir):
    # audio: 2 x 6,400 training samples make 48 windows of 256, batches halved from 64 to 4 so that an
    # epoch has at least 8 steps; epochs: about 4 M samples seen, at most 300
    config = TrainConfig(data=str(audio_dir), **{k: v for k, v in API_TINY.items() if k != "progress"})
    task = SequenceTask.load(config, progress=False)
    resolved = resolved_config(config, task)
    assert resolved.window == 256 and resolved.batch_size == 4 and resolved.epochs == 300
    assert resolved.warmup_epochs == pytest.approx(8.33) and resolved.weight_decay == 0.0  # 100 steps of 12
    assert sequence_task.count_windows([6400, 6400], 256) == 48  # 24 windows of 256 (+1 target) per file

    # a series shorter than four receptive fields: the window is what the training part allows
    config = TrainConfig(data=str(series_csv), columns="sales", model="wavenet_small", threads=1)
    task = SequenceTask.load(config, progress=False)
    # wavenet_small: receptive field 511; the training part, 240 steps, is 228 seasonal differences
    resolved = resolved_config(config, task)
    assert resolved.window == 227 and resolved.batch_size == 1 and resolved.optimizer == "adamw"
    assert "μ-law" not in task.describe(resolved) and "227 steps" in task.describe(resolved)
    assert "seasonal-diff" in task.describe(resolved) and resolved.patience == series_task.PATIENCE


def test_validation_scores_every_validation_sample_once_with_its_past(series_csv):
    config = TrainConfig(data=str(series_csv), columns="sales", window=64, batch_size=4, **{
        k: v for k, v in API_TINY.items() if k != "progress"})
    task = SequenceTask.load(config, progress=False)
    model = get_model_info("wavenet_small").builder(output="continuous", **TINY_ARGS)
    _, val = task.loaders(config, torch.device("cpu"), model)
    assert task.context == 15  # receptive field 16: 15 samples of past before each counted output
    counted = torch.cat([y[:, 0, task.context:].reshape(-1) for _, y in val])
    expected = torch.from_numpy(task.val.signals[0][0])
    assert torch.equal(counted, expected)  # every validation sample, in order, once; no training sample
    assert val.num_samples == 1 and len(val) == 1  # one window of 15 + 60 samples


def test_the_data_picks_the_task_and_the_model_facts_are_bound_once(series_csv, audio_dir):
    config = TrainConfig(data=str(series_csv), columns="sales", window=64, batch_size=4, model="wavenet_small")
    task = SequenceTask.load(config, progress=False)
    assert isinstance(task, SeriesTask) and isinstance(SequenceTask.load(TrainConfig(
        data=str(audio_dir), model="wavenet_small"), progress=False), AudioTask)
    with pytest.raises(RuntimeError, match="no model yet"):
        task.checkpoint_fields(config)  # what a checkpoint keeps comes from the model, never a default
    build = get_model_info("wavenet_small").builder
    task.loaders(config, torch.device("cpu"), build(output="continuous", **TINY_ARGS))
    fields = task.checkpoint_fields(config)
    assert (fields.receptive_field, fields.validation_context, fields.window) == (16, 15, 64)
    other = build(output="continuous", **{**TINY_ARGS, "layers_per_stack": 5})  # receptive field 32
    with pytest.raises(ValueError, match="trains the model of"):
        task.loaders(config, torch.device("cpu"), other)


def test_exact_resume_after_an_interruption(audio_dir, tmp_path):
    common = dict(data=str(audio_dir), epochs=3, batch_size=8, **API_TINY)
    straight = train(out_dir=str(tmp_path / "straight"), **common)

    def interrupt_after_first_epoch(record):
        if record.epoch == 1:
            raise KeyboardInterrupt

    cut = train(out_dir=str(tmp_path / "cut"), on_epoch_end=interrupt_after_first_epoch, **common)
    assert cut.stopped_reason == "interrupted" and len(cut.history) == 1
    resumed = train(out_dir=str(tmp_path / "cut"), resume=True, **common)
    assert resumed.stopped_reason == "completed" and len(resumed.history) == 3
    a = load_checkpoint(tmp_path / "straight" / "last.pt").model_state
    b = load_checkpoint(tmp_path / "cut" / "last.pt").model_state
    assert _states_equal(a, b)
    assert [r.val["loss"] for r in straight.history] == [r.val["loss"] for r in resumed.history]


def test_time_budget_and_resume_checks(audio_dir, series_csv, tmp_path):
    result = train(data=str(audio_dir), epochs=20, time_budget_s=1e-6, out_dir=str(tmp_path / "budget"),
                   **API_TINY)
    assert result.stopped_reason == "time_budget" and len(result.history) == 1

    config = TrainConfig(data=str(series_csv), columns="sales", model="wavenet_small")
    task = SequenceTask.load(config, progress=False)
    saved = load_checkpoint(tmp_path / "budget" / "last.pt")
    with pytest.raises(UserError, match="modelled mulaw data"):
        task.check_resume(saved)
    other_rate = SequenceTask.load(TrainConfig(data=str(audio_dir), model="wavenet_small", sample_rate=4000),
                                   progress=False)
    with pytest.raises(UserError, match="8000 Hz"):
        other_rate.check_resume(saved)


def test_bad_data_and_options_exit_2_with_a_clear_message(audio_dir, series_csv, tmp_path, capsys):
    two_columns = series_csv  # sales and weekday besides the step column
    cases = [
        (["--data", str(tmp_path / "nowhere")], "learns from sequences"),
        (["--data", str(two_columns)], "choose the series by name"),
        (["--data", str(series_csv), "--columns", "sale"], "did you mean 'sales'"),
        (["--data", str(series_csv), "--columns", "sales", "--sample-rate", "8000"], "--sample-rate is for audio"),
        (["--data", str(audio_dir), "--columns", "sales"], "is audio"),
        (["--data", str(audio_dir), "--output", "continuous"], "output='continuous' was given"),
        (["--data", str(audio_dir), "--num-conditions", "2"], "give --condition-on-folders"),
        (["--data", str(audio_dir), "--window", "9000"], "shorter --window"),
        (["--data", str(audio_dir), "--finetune", "gradual"], "no classifier head"),
    ]
    for extra, expected in cases:
        argv = ["train", "wavenet_small", *extra, "--quiet", "--device", "cpu", "--out", str(tmp_path / "bad")]
        assert main(argv) == 2, extra
        assert expected in capsys.readouterr().err, extra


@pytest.fixture(scope="module")
def speakers_dir(tmp_path_factory):
    """Two 'speakers' in sub-folders, a low and a high voice, two files each."""
    folder = tmp_path_factory.mktemp("speakers")
    for speaker, f0 in (("low", 150.0), ("high", 400.0)):
        (folder / speaker).mkdir()
        for i in range(2):
            soundfile.write(folder / speaker / f"clip{i}.wav", voiced(0.5, f0, i), RATE, subtype="PCM_16")
    return folder


def test_windows_carry_the_condition_of_the_signal_they_were_cut_from():
    from cnnzoo.data.windows import SignalSet, WindowLoader

    signals = [np.full((1, 300), -0.5, np.float32), np.full((1, 500), 0.5, np.float32)]
    loader = WindowLoader(SignalSet(signals, ["a", "b"], [3, 7]), 50, 4, hop=10, seed=1)
    seen = 0
    for x, _, condition in loader:
        from_second = x[:, 0] > 128  # μ-law class of +0.5 against -0.5
        assert torch.equal(condition, torch.where(from_second, 7, 3))
        seen += len(x)
    assert seen == loader.num_windows and seen > 40


def test_conditioning_on_folders_trains_resumes_and_generates_by_name(speakers_dir, tmp_path, capsys):
    common = dict(data=str(speakers_dir), condition_on_folders=True, epochs=3, batch_size=8, **API_TINY)
    straight = train(out_dir=str(tmp_path / "straight"), **common)
    saved = load_checkpoint(tmp_path / "straight" / "last.pt")
    assert saved.model_args["num_conditions"] == 2 and list(saved.fields.conditions) == ["high", "low"]
    # Two seconds of audio and three epochs: the plumbing, not learning (the unconditioned CLI test and
    # the note's speech runs cover that); every window's loss was still computed and finite.
    assert all(np.isfinite(r.val["loss"]) and np.isfinite(r.train["loss"]) for r in straight.history)

    def interrupt_after_first_epoch(record):
        if record.epoch == 1:
            raise KeyboardInterrupt

    train(out_dir=str(tmp_path / "cut"), on_epoch_end=interrupt_after_first_epoch, **common)
    resumed = train(out_dir=str(tmp_path / "cut"), resume=True, **common)
    assert _states_equal(saved.model_state, load_checkpoint(tmp_path / "cut" / "last.pt").model_state)
    assert [r.val["loss"] for r in straight.history] == [r.val["loss"] for r in resumed.history]

    best = str(tmp_path / "straight" / "best.pt")
    wav = tmp_path / "low.wav"
    assert main(["generate", best, "--seconds", "0.05", "--condition", "low", "--out", str(wav),
                 "--device", "cpu"]) == 0 and wav.stat().st_size > 0
    assert main(["generate", best, "--seconds", "0.05", "--condition", "middle", "--out", str(wav)]) == 2
    assert "choose 0..1 or a name: high, low" in capsys.readouterr().err
    assert main(["generate", best, "--seconds", "0.05", "--out", str(wav)]) == 2
    assert "conditioned on 2 ids" in capsys.readouterr().err


def test_conditioning_on_folders_needs_a_folder_per_speaker(audio_dir, series_csv, tmp_path, capsys):
    cases = [
        (audio_dir, "every file must be in a sub-folder"),  # voice0.wav, voice1.wav at the top
        (series_csv, "--condition-on-folders is for audio"),
    ]
    one = tmp_path / "one-speaker" / "only"
    one.mkdir(parents=True)
    soundfile.write(one / "a.wav", voiced(0.5, 200.0), RATE, subtype="PCM_16")
    cases.append((one.parent, "at least two sub-folders"))
    for data, expected in cases:
        argv = ["train", "wavenet_small", "--data", str(data), "--condition-on-folders", "--quiet", "--device", "cpu",
                "--out", str(tmp_path / "bad")]
        assert main(argv) == 2, data
        assert expected in capsys.readouterr().err, data
