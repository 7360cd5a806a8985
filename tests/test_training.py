"""The training loop: it learns, writes every artefact, resumes exactly, survives NaNs, kills and Ctrl-C.

Runs are tiny (ResNet-18 at a quarter width, 16 px synthetic images, a few epochs) so the file stays
within seconds; the data is generated, never read from disk outside tmp_path.
"""
from __future__ import annotations

import json
import math
import time

import pytest
import torch
from torch import nn

from cnnzoo.checkpoint import Checkpoint, EpochRecord
from cnnzoo.cli import main
from cnnzoo.errors import UserError
from cnnzoo.training import TrainConfig, TrainingDiverged, load_checkpoint, save_checkpoint, train
from cnnzoo.training import trainer as trainer_module
from cnnzoo.training.config import default_batch_size, family_training_defaults, resolve_config
from cnnzoo.training.history import COLUMNS, read_history_csv
from cnnzoo.training.optim import LRSchedule, build_optimizer, parameter_groups
from cnnzoo.training.tasks import image as image_task

DATA = "synthetic:classes=4,n=256,size=16"
# One thread: tiny convolutions gain nothing from two, and lose a lot when other processes
# compete for the cores (OpenMP threads wait for each other).
# Batches of 64: 3 steps per epoch on the 204 training images (the NaN test counts on that).
TINY = dict(model="resnet18", model_args={"width_mult": 0.25}, data=DATA, progress=False, device="cpu", threads=1,
            batch_size=64)
CLI_TINY = ["resnet18", "--data", DATA, "--width-mult", "0.25", "--quiet", "--device", "cpu", "--threads", "1",
            "--batch-size", "64"]


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_short_run_learns_and_writes_every_artefact(tmp_path):
    threads = torch.get_num_threads()
    result = train(epochs=4, out_dir=str(tmp_path), **TINY)

    assert torch.get_num_threads() == threads  # threads=1 applied to the run only
    assert result.stopped_reason == "completed"
    assert len(result.history) == 4
    assert result.best_val_acc >= 0.75, result.history  # 4 balanced classes: chance is 0.25
    assert result.history[-1].train["loss"] < result.history[0].train["loss"]
    assert result.images_per_s > 0
    for name in ("best.pt", "last.pt", "history.csv", "history.json", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert not list(tmp_path.glob("*.tmp*"))

    rows = read_history_csv(tmp_path / "history.csv")
    assert list(rows[0]) == list(COLUMNS) and len(rows) == 4
    assert all(0.0 <= float(r[k]) <= 1.0 for r in rows for k in ("train_acc", "val_acc"))
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["config"]["optimizer"] == "sgd" and saved["config"]["epochs"] == 4  # resolved defaults
    assert saved["stopped_reason"] == "completed" and len(saved["epochs"]) == 4

    last = load_checkpoint(tmp_path / "last.pt")  # weights_only=True inside
    for key, value in {"model_name": last.model_name, "model_args": last.model_args, "model_state": last.model_state,
                       "class_names": last.image.class_names, "preprocessing": last.image.preprocessing,
                       "config": last.config, "history": last.history, "epoch": last.epoch,
                       "optimizer_state": last.resume.optimizer, "scheduler_state": last.resume.scheduler,
                       "rng_state": last.resume.rng}.items():
        assert value is not None, key
    assert last.model_args == {"width_mult": 0.25, "num_classes": 4, "in_chans": 3}
    assert last.image.preprocessing.image_size == 16 and len(last.image.preprocessing.mean) == 3
    assert last.epoch == 4 and len(last.history) == 4

    best = load_checkpoint(tmp_path / "best.pt")
    assert best.epoch == result.best_epoch
    assert _states_equal(best.model_state, result.model.state_dict())  # result.model = best weights


def test_mixed_precision_on_the_cpu_trains(tmp_path):
    # bfloat16 autocast through every layer, including the convolutions whose weight gradient
    # Conv2d otherwise computes itself (TINY's last stage has a 1x1 output).
    result = train(epochs=1, amp=True, out_dir=str(tmp_path), **TINY)
    assert result.config.amp and len(result.history) == 1
    assert math.isfinite(result.history[0].train["loss"])


def test_resume_after_interruption_reproduces_the_uninterrupted_weights(tmp_path):
    epochs = 3
    straight = train(epochs=epochs, out_dir=str(tmp_path / "straight"), **TINY)

    def interrupt_after_first_epoch(record):
        if record.epoch == 1:
            raise KeyboardInterrupt  # what Ctrl-C does, at the worst moment: right after a checkpoint

    cut = train(epochs=epochs, out_dir=str(tmp_path / "cut"), on_epoch_end=interrupt_after_first_epoch, **TINY)
    assert cut.stopped_reason == "interrupted" and len(cut.history) == 1
    assert load_checkpoint(tmp_path / "cut" / "last.pt").epoch == 1

    resumed = train(epochs=epochs, out_dir=str(tmp_path / "cut"), resume=True, **TINY)
    assert resumed.stopped_reason == "completed" and len(resumed.history) == epochs
    final_straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    final_resumed = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert _states_equal(final_straight.model_state, final_resumed.model_state)
    assert [r.val["acc"] for r in straight.history] == [r.val["acc"] for r in resumed.history]


def test_resume_through_the_cli_after_a_kill_mid_epoch(tmp_path, monkeypatch):
    """A kill during epoch 2 loses that epoch only; --resume redoes it and ends where a straight run ends."""
    args = CLI_TINY + ["--epochs", "2"]
    assert main(["train", *args, "--out", str(tmp_path / "straight")]) == 0

    real_epoch = trainer_module._train_one_epoch
    calls = []

    def killed_in_second_epoch(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(*a, **k)

    monkeypatch.setattr(trainer_module, "_train_one_epoch", killed_in_second_epoch)
    assert main(["train", *args, "--out", str(tmp_path / "cut")]) == 130
    assert load_checkpoint(tmp_path / "cut" / "last.pt").epoch == 1
    monkeypatch.setattr(trainer_module, "_train_one_epoch", real_epoch)
    assert main(["train", *args, "--out", str(tmp_path / "cut"), "--resume"]) == 0

    a = load_checkpoint(tmp_path / "straight" / "last.pt").model_state
    b = load_checkpoint(tmp_path / "cut" / "last.pt").model_state
    assert _states_equal(a, b)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real_loss = image_task.classification_loss
    steps = []

    def loss_turns_nan_in_epoch_two(model, x, y, smoothing):
        loss, logits = real_loss(model, x, y, smoothing)
        steps.append(1)
        return (loss * float("nan") if len(steps) > 3 else loss), logits  # 3 steps = epoch 1

    monkeypatch.setattr(image_task, "classification_loss", loss_turns_nan_in_epoch_two)
    with pytest.raises(TrainingDiverged, match="lower learning rate"):
        train(epochs=3, out_dir=str(tmp_path / "api"), **TINY)
    last = load_checkpoint(tmp_path / "api" / "last.pt")
    assert last.epoch == 1
    assert all(torch.isfinite(v).all() for v in last.model_state.values() if v.is_floating_point())
    assert len(json.loads((tmp_path / "api" / "history.json").read_text())["epochs"]) == 1

    steps.clear()
    assert main(["train", *CLI_TINY, "--epochs", "3", "--out", str(tmp_path / "cli")]) == 1
    assert "diverged" in capsys.readouterr().err


def test_a_huge_learning_rate_is_caught_as_divergence(tmp_path):
    with pytest.raises(TrainingDiverged):
        train(epochs=2, lr=1e30, optimizer="adam", out_dir=str(tmp_path), **TINY)
    assert not (tmp_path / "last.pt").exists() or load_checkpoint(tmp_path / "last.pt").epoch >= 1


def _checkpoint_after(epochs: int) -> Checkpoint:
    """A checkpoint of ``epochs`` epochs (no weights: only the write is under test)."""
    record = EpochRecord(epoch=1, train={"loss": 1.0}, val={"loss": 1.0}, lr=0.1, epoch_time=1.0, throughput=1.0,
                         elapsed=1.0)
    return Checkpoint(model_name="resnet18", model_args={}, model_state={}, task="image", fields=None,
                      config=TrainConfig(model="resnet18"), history=[record] * epochs, monitor="val_loss",
                      best_score=None)


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(_checkpoint_after(1), path)

    def dies_half_way(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # a kill at the worst moment

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_checkpoint_after(2), path)
    monkeypatch.undo()
    assert load_checkpoint(path).epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_early_stopping_and_time_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(image_task, "evaluate_loader", lambda *a, **k: {"loss": 1.0, "acc": 0.5})
    result = train(epochs=10, patience=2, out_dir=str(tmp_path / "patience"), **TINY)
    assert result.stopped_reason == "early_stopping" and len(result.history) == 3
    monkeypatch.undo()

    result = train(epochs=10, time_budget_s=1e-6, out_dir=str(tmp_path / "budget"), **TINY)
    assert result.stopped_reason == "time_budget" and len(result.history) == 1


def test_bad_options_and_missing_files_give_clear_errors_and_exit_2(tmp_path, capsys):
    cases = [
        (["train", "resnet9000"], "unknown model"),
        (["train", "resnet18", "--epochs", "0"], "epochs"),
        (["train", "resnet18", "--lr", "-1"], "lr"),
        (["train", "resnet18", "--data", str(tmp_path / "nowhere")], "does not exist"),
        (["train", "resnet18", "--out", str(tmp_path / "empty"), "--resume"], "cannot resume"),
        (["train", "resnet18", "--data", DATA, "--num-classes", "7"], "num_classes"),
        (["train", "resnet18", "--data", DATA, "--no-such-option", "1"], "no_such_option"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        assert expected in capsys.readouterr().err, argv
    with pytest.raises(SystemExit) as exit_info:  # argparse rejects a choice outside the list
        main(["train", "resnet18", "--optimizer", "rmsprop"])
    assert exit_info.value.code == 2

    train(epochs=1, out_dir=str(tmp_path / "done"), **TINY)
    with pytest.raises(UserError, match="--resume"):  # never silently overwrite a run
        train(epochs=1, out_dir=str(tmp_path / "done"), **TINY)


def test_defaults_make_a_model_without_normalisation_use_adamw_and_warm_up():
    class NoNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

    class WithNorm(NoNorm):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm2d(4)

    base = TrainConfig(model="any", data="synthetic")
    plain = resolve_config(base, num_train=1437, image_size=32, model=NoNorm())
    normed = resolve_config(base, num_train=1437, image_size=32, model=WithNorm())
    assert plain.optimizer == "adamw" and plain.lr < normed.lr and plain.warmup_epochs > normed.warmup_epochs
    assert normed.optimizer == "sgd" and normed.batch_size == 64 and normed.augment == "light"
    assert resolve_config(TrainConfig(model="any", data="digits"), num_train=1437, image_size=32,
                          model=WithNorm()).augment == "none"  # mirrored digits are not digits
    assert 10 <= normed.epochs <= 20  # digits-sized data: ~15 passes
    assert resolve_config(TrainConfig(model="any", batch_size=64), num_train=50, image_size=32,
                          model=WithNorm()).batch_size == 50 and plain.epochs == normed.epochs


def test_small_data_gets_smaller_batches_and_vgg_its_own_optimiser():
    assert default_batch_size(1437) == 64   # digits: 22 steps per epoch
    assert default_batch_size(240) == 16    # flowers-mini: 15 steps instead of 3
    assert default_batch_size(30) == 16     # never below 16
    assert default_batch_size(50_000) == 128
    vgg = TrainConfig(model="vgg11_bn")
    assert family_training_defaults("vgg11_bn", vgg) == {"optimizer": "adamw", "lr": 1e-4}
    assert family_training_defaults("vgg11_bn", TrainConfig(model="vgg11_bn", lr=0.01)) == {}  # the user's wins
    assert family_training_defaults("resnet18", TrainConfig(model="resnet18")) == {}

    class WithNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm2d(4)

    resolved = resolve_config(vgg, num_train=240, image_size=64, model=WithNorm())
    assert (resolved.optimizer, resolved.lr, resolved.batch_size) == ("adamw", 1e-4, 16)


def test_channels_last_by_default_on_cpu_and_with_amp_on_cuda():
    class WithNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm2d(4)

    def layout(device_type, **fields):
        return resolve_config(TrainConfig(model="any", **fields), num_train=500, image_size=32,
                              model=WithNorm(), device_type=device_type).channels_last

    assert layout("cpu") is True and layout("cuda") is False and layout("cuda", amp=True) is True
    assert layout("cpu", channels_last=False) is False  # the user's choice wins


@pytest.mark.parametrize("name, reference", [
    ("sgd", lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)),
    ("adamw", lambda groups: torch.optim.AdamW(groups, lr=0.1)),
    ("adam", lambda groups: torch.optim.Adam(groups, lr=0.1)),
])
def test_fused_optimizers_make_the_default_implementations_update(name, reference):
    torch.manual_seed(0)
    ours = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    theirs = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    theirs.load_state_dict(ours.state_dict())
    optimizer = build_optimizer(ours, name, lr=0.1, weight_decay=0.01)
    assert optimizer.param_groups[0]["fused"]  # the CPU has fused kernels in every PyTorch we support
    reference_optimizer = reference(parameter_groups(theirs, 0.01))
    for _ in range(3):  # the same gradients on both sides each step
        for a, b in zip(ours.parameters(), theirs.parameters()):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        optimizer.step()
        reference_optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_schedule_warms_up_then_decays_to_zero():
    schedule = LRSchedule("cosine", peak_lr=1.0, total_steps=100, warmup_steps=10)
    lrs = [schedule.lr_at(s) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 0.001
    assert LRSchedule("step", 1.0, 100).lr_at(80) == pytest.approx(0.01)
    one_cycle = [LRSchedule("onecycle", 1.0, 100).lr_at(s) for s in range(100)]
    assert max(one_cycle) == pytest.approx(1.0, rel=0.05) and one_cycle[0] < 0.05 and one_cycle[-1] < 0.01


class _TinyAuxNet(nn.Module):
    """A GoogLeNet-shaped stand-in: forward returns logits, forward_train adds auxiliary logits."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, aux_logits: bool = True):
        super().__init__()
        self.aux_logits = aux_logits
        self.features = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc, self.aux = nn.Linear(8, num_classes), nn.Linear(8, num_classes)
        self.forward_train_calls = 0

    def forward(self, x):
        return self.fc(self.features(x))

    def forward_train(self, x):
        self.forward_train_calls += 1
        f = self.features(x)
        return self.fc(f), [self.aux(f)]


def test_auxiliary_heads_add_to_the_loss(monkeypatch, tmp_path):
    from cnnzoo import registry

    info = registry.ModelInfo("tiny_aux", _TinyAuxNet, "test", "none")
    monkeypatch.setitem(registry._REGISTRY, "tiny_aux", info)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])
    model = _TinyAuxNet(num_classes=2)
    loss, logits = image_task.classification_loss(model, x, y, 0.0)
    main_loss = torch.nn.functional.cross_entropy(model(x), y)
    aux_loss = torch.nn.functional.cross_entropy(model.forward_train(x)[1][0], y)
    assert math.isclose(loss.item(), (main_loss + 0.3 * aux_loss).item(), rel_tol=1e-5)

    monkeypatch.chdir(tmp_path)  # the default output folder is relative: runs/<model>-<data>
    result = train(model="tiny_aux", data=DATA, epochs=1, progress=False, device="cpu", threads=1)
    assert result.model.forward_train_calls > 0
    assert (tmp_path / "runs" / "tiny_aux-synthetic_classes_4_n_256_size_16" / "last.pt").is_file()


def test_a_time_budget_fits_the_schedule_to_the_epochs_it_holds(tmp_path, monkeypatch):
    # Measured 1 s per epoch (pinned here) and a 3.5 s budget: 3 epochs of the 20 asked, with the
    # warm-up and cosine decay planned for those 3, so the last epoch runs at a decayed rate. (The
    # plan made before training alone: the re-plans after each epoch are the next tests'.)
    monkeypatch.setattr(trainer_module, "measure_epoch_seconds", lambda *a, **k: 1.0)
    monkeypatch.setattr(trainer_module, "epochs_that_fit", lambda *a, **k: None)
    result = train(epochs=20, time_budget_s=3.5, out_dir=str(tmp_path), **TINY)
    assert result.planned_epochs == 3 and len(result.history) == 3 and result.estimated_epoch_s == 1.0
    assert result.stopped_reason == "time_budget"
    peak = result.config.lr
    assert result.history[-1].lr < 0.1 * peak  # cosine ends near zero instead of stopping at its peak
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved.config.epochs == 3  # the plan is part of the run: --resume keeps it


def test_epochs_slower_than_measured_shrink_the_plan_so_the_schedule_still_decays(tmp_path, monkeypatch):
    # Measured 0.01 s per epoch (pinned) plans all 40 epochs into a 3 s budget; each epoch really
    # takes 0.25 s more (a busy machine). Without planning again the run would stop near epoch 11 at
    # its peak learning rate; it re-fits the schedule to the epochs that fit and ends decayed.
    monkeypatch.setattr(trainer_module, "measure_epoch_seconds", lambda *a, **k: 0.01)
    one_epoch = trainer_module._train_one_epoch

    def slow_epoch(*args, **kwargs):
        time.sleep(0.25)
        return one_epoch(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "_train_one_epoch", slow_epoch)
    result = train(epochs=40, time_budget_s=3.0, out_dir=str(tmp_path), **TINY)
    assert result.stopped_reason == "time_budget" and 3 <= result.planned_epochs < 40
    assert len(result.history) == result.planned_epochs
    assert result.history[-1].lr < 0.2 * result.config.lr
    assert load_checkpoint(tmp_path / "last.pt").config.epochs == result.planned_epochs  # --resume keeps it


def test_epochs_faster_than_measured_grow_the_plan_up_to_the_epochs_asked(tmp_path, monkeypatch):
    # Measured 1 s per epoch (pinned) plans 3 of the 12 asked into a 3.5 s budget; the epochs really
    # take a fraction of that, so after each one the plan grows, to the 12 asked and no further, and
    # the schedule still ends decayed (the timing probe can misjudge either way).
    monkeypatch.setattr(trainer_module, "measure_epoch_seconds", lambda *a, **k: 1.0)
    result = train(epochs=12, time_budget_s=3.5, out_dir=str(tmp_path), **TINY)
    assert result.planned_epochs == 12 and len(result.history) == 12
    assert result.stopped_reason == "completed"  # the budget held everything asked for
    assert result.history[-1].lr < 0.1 * result.config.lr
    assert load_checkpoint(tmp_path / "last.pt").config.epochs == 12


def test_measuring_an_epoch_leaves_the_run_untouched(tmp_path):
    # With a generous budget the plan is the epochs asked for, and the weights are those of a run
    # without a budget: the timing probe trains a throwaway copy.
    a = train(epochs=2, out_dir=str(tmp_path / "plain"), **TINY)
    # float32 asked for: on a CPU with hardware bfloat16 the budget would otherwise time both
    # precisions and might choose bfloat16 (tests/test_budget_measure.py times both and forces float32)
    b = train(epochs=2, time_budget_s=3600, amp=False, out_dir=str(tmp_path / "budget"), **TINY)
    assert b.planned_epochs == 2 and b.estimated_epoch_s > 0
    assert _states_equal(a.model.state_dict(), b.model.state_dict())
