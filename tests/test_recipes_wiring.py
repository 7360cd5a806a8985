"""The training-recipe components wired into training: policy augmentations, mixup/CutMix, EMA,
progressive resizing, --recipe, and a time budget that fills itself without --epochs.

Runs are tiny (ResNet-18 at a quarter width on synthetic images, a few steps) to stay fast on two cores.
"""
from __future__ import annotations

import json

import pytest
import torch

from cnnzoo.checkpoint import load_checkpoint
from cnnzoo.cli import COMMANDS, main
from cnnzoo.config import AUGMENTS, TrainConfig
from cnnzoo.data.augment import AUGMENT_CHOICES
from cnnzoo.errors import UserError
from cnnzoo.training import config as config_module
from cnnzoo.training import train
from cnnzoo.training import trainer as trainer_module
from cnnzoo.training import budget as budget_module
from cnnzoo.training.budget import fit_epochs_to_budget
from cnnzoo.training.config import RECIPES, make_config, resolve_config

TINY = dict(model="resnet18", model_args={"width_mult": 0.25}, progress=False, device="cpu", threads=1)
# 64 px, so that progressive resizing's first epoch (half the side, at least 32 px) really is smaller.
BIG = "synthetic:classes=4,n=80,size=64"
SMALL = "synthetic:classes=4,n=256,size=16"


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_config_spells_out_the_data_packages_augmentations():
    # config sits below data in the layers, so it keeps its own tuple: the two must agree
    assert AUGMENTS == AUGMENT_CHOICES


def test_recipes_fill_only_what_the_user_left_unset():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    plain = resolve_config(TrainConfig(model="resnet18", data="synthetic"), num_train=1000, image_size=32, model=model)
    assert (plain.recipe, plain.augment, plain.mixup, plain.cutmix, plain.ema) == ("plain", "light", 0.0, 0.0, None)
    strong = resolve_config(TrainConfig(model="resnet18", data="synthetic", recipe="strong", cutmix=0.5),
                            num_train=1000, image_size=32, model=model)
    row = RECIPES["strong"]
    assert strong.augment == "light" + row.policy and strong.mixup == row.mixup and strong.ema == row.ema
    assert strong.cutmix == 0.5  # given by the user: the recipe does not override it
    digits = resolve_config(TrainConfig(model="resnet18", data="digits", recipe="strong"), num_train=1000,
                            image_size=32, model=model)
    assert digits.augment == "none"  # mirror-sensitive: no flipping policy


def test_progressive_resizing_is_on_from_scratch_where_it_shrinks_the_first_epochs():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))

    def progressive(image_size, **fields):
        config = TrainConfig(model="resnet18", data="synthetic", **fields)
        return resolve_config(config, num_train=1000, image_size=image_size, model=model).progressive_resize

    assert progressive(128) is True and progressive(64, recipe="strong") is True
    assert progressive(32) is False  # half of 32 px is below the smallest size: nothing to do
    assert progressive(128, weights="torchvision") is False  # from weights: their own size throughout
    assert progressive(128, progressive_resize=False) is False  # --no-progressive-resize
    assert progressive(32, progressive_resize=True) is True


def test_resume_is_exact_with_every_recipe_option_on(tmp_path):
    options = dict(TINY, data=BIG, epochs=2, batch_size=16, mixup=0.2, cutmix=1.0, ema=0.9,
                   augment="light-trivial-erase", progressive_resize=True)
    straight = train(out_dir=str(tmp_path / "straight"), **options)

    def interrupt_after_first_epoch(record):
        if record.epoch == 1:
            raise KeyboardInterrupt

    cut = train(out_dir=str(tmp_path / "cut"), on_epoch_end=interrupt_after_first_epoch, **options)
    assert cut.stopped_reason == "interrupted"
    resumed = train(out_dir=str(tmp_path / "cut"), resume=True, **options)
    assert len(resumed.history) == 2
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert _states_equal(a.model_state, b.model_state)
    assert a.resume is not None and b.resume is not None and a.resume.ema is not None and b.resume.ema is not None
    assert _states_equal(a.resume.ema["model"], b.resume.ema["model"])
    assert [r.val_ema for r in straight.history] == [r.val_ema for r in resumed.history]
    assert set(straight.history[0].val_ema) == {"loss", "acc"}
    rows = json.loads((tmp_path / "straight" / "history.json").read_text())["epochs"]
    assert "val_ema_acc" in rows[0]
    best = load_checkpoint(tmp_path / "straight" / "best.pt")
    assert best.best_weights in ("raw", "ema")


def test_without_ema_history_rows_are_as_before(tmp_path):
    train(out_dir=str(tmp_path), data=SMALL, epochs=1, batch_size=64, **TINY)
    row = json.loads((tmp_path / "history.json").read_text())["epochs"][0]
    assert not any(key.startswith("val_ema") for key in row)
    assert load_checkpoint(tmp_path / "best.pt").best_weights == "raw"


def test_a_budget_without_epochs_chooses_how_many_fill_it(tmp_path, monkeypatch):
    config = TrainConfig(model="m", epochs=8, warmup_epochs=1.0, time_budget_s=15 * 60)
    assert fit_epochs_to_budget(config, 60.0, lambda *a: None, fill=True).epochs == 15  # not the default 8
    assert fit_epochs_to_budget(config, 60.0, lambda *a: None).epochs == 8  # --epochs given: at most those

    # Through train(): a default of 2 epochs, 1 s per epoch (pinned) and a 3.5 s budget -> 3 epochs
    # planned before training; the epochs really take a fraction of a second, so the re-plans after
    # each one fill the budget, up to FILL_AT_MOST_EPOCHS (10 here) and no further.
    monkeypatch.setattr(config_module, "default_epochs", lambda n: 2)
    monkeypatch.setattr(budget_module, "FILL_AT_MOST_EPOCHS", 10)
    monkeypatch.setattr(trainer_module, "measure_epoch_seconds", lambda *a, **k: 1.0)
    lines = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    result = train(time_budget_s=3.5, out_dir=str(tmp_path / "fill"), data=SMALL, batch_size=64,
                   **{**TINY, "progress": True})
    monkeypatch.undo()
    assert any("3 epochs (" in line or "3 epochs;" in line for line in lines), lines[:5]
    assert result.planned_epochs == 10 == len(result.history)


def test_evaluate_with_tta_and_its_refusal_for_mirror_sensitive_data(tmp_path, capsys):
    train(out_dir=str(tmp_path), data=SMALL, epochs=1, batch_size=64, **TINY)
    assert main(["evaluate", str(tmp_path / "best.pt"), "--tta", "--device", "cpu"]) == 0
    assert "with TTA" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "best.pt"), "--data", "digits", "--tta"]) == 2
    assert "mirror" in capsys.readouterr().err


def test_lr_find_command_writes_its_plot_and_json_and_prints_the_suggestion(tmp_path, capsys):
    out = tmp_path / "lr"
    code = main(["lr-find", "resnet18", "--data", SMALL, "--width-mult", "0.25", "--steps", "20", "--threads", "1",
                 "--device", "cpu", "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "suggested learning rate" in printed
    saved = json.loads((out / "lr_find.json").read_text())
    assert saved["model"] == "resnet18" and len(saved["lrs"]) == len(saved["losses"]) <= 20
    assert (out / "lr_find.png").stat().st_size > 0


def test_new_commands_are_registered():
    assert {"lr-find", "show-batch"} <= set(COMMANDS)


def test_mixing_is_refused_for_the_linear_probe_and_left_out_of_its_recipe():
    with pytest.raises(UserError, match="--mixup works on images"):
        make_config(model="resnet18", finetune="linear", mixup=0.2)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    probe = resolve_config(TrainConfig(model="resnet18", data="synthetic", recipe="strong", finetune="linear"),
                           num_train=1000, image_size=32, model=model)
    assert (probe.mixup, probe.cutmix, probe.ema) == (0.0, 0.0, RECIPES["strong"].ema)
