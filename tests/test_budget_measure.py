"""A time budget's measurements: mixed precision chosen by timing (an epoch's cost weighed by its
image side under progressive resizing), and how many epochs a budget filled without --epochs holds."""
from __future__ import annotations

import math

import pytest
import torch

from cnnzoo.data.augment import progressive_size
from cnnzoo.training import TrainConfig, load_checkpoint, train
from cnnzoo.training import budget as budget_module
from cnnzoo.training import trainer as trainer_module
from cnnzoo.training.budget import (
    AMP_MIN_SPEEDUP,
    EpochCost,
    PrecisionChoice,
    mean_epoch_seconds,
    train_sides,
)

DATA = "synthetic:classes=4,n=256,size=16"
TINY = dict(model="resnet18", model_args={"width_mult": 0.25}, data=DATA, progress=False, device="cpu", threads=1,
            batch_size=64)


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _pin_costs(monkeypatch, float32_epoch_s: float, bfloat16_epoch_s: float) -> list[bool]:
    """Pretend this CPU has hardware bfloat16 and that an epoch costs these seconds in each precision
    (for the choice, and for the plan made after it); returns the precisions the choice timed."""
    timed: list[bool] = []

    def cost(*args, amp=None, **kwargs):
        timed.append(bool(amp))
        return EpochCost.uniform(bfloat16_epoch_s if amp else float32_epoch_s)

    def first_epoch(task, model, train_loader, val_loader, config, device):
        return bfloat16_epoch_s if config.amp else float32_epoch_s

    monkeypatch.setattr(budget_module, "native_bfloat16", lambda: True)
    monkeypatch.setattr(trainer_module, "measure_epoch_cost", cost)
    monkeypatch.setattr(trainer_module, "measure_epoch_seconds", first_epoch)
    return timed


def test_a_budget_trains_in_bfloat16_when_it_times_clearly_faster(tmp_path, monkeypatch):
    timed = _pin_costs(monkeypatch, float32_epoch_s=1.0, bfloat16_epoch_s=0.5)
    lines: list[str] = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    result = train(epochs=2, time_budget_s=3600, out_dir=str(tmp_path / "fast2"), **{**TINY, "progress": True})
    monkeypatch.undo()
    assert timed == [False, True, False]  # float32 before and after bfloat16 (the first timing pays for kernels)
    assert result.config.amp is True
    assert any("mixed precision: on" in line and "2.00x" in line for line in lines), lines[:6]
    assert load_checkpoint(tmp_path / "fast2" / "last.pt").config.amp is True  # --resume keeps the choice
    # the plan is measured in the chosen precision: 0.5 s an epoch
    assert result.estimated_epoch_s == pytest.approx(0.5)


def test_float32_stays_unless_bfloat16_wins_by_the_margin(tmp_path, monkeypatch):
    _pin_costs(monkeypatch, float32_epoch_s=1.0, bfloat16_epoch_s=1.0 / (AMP_MIN_SPEEDUP - 0.05))
    result = train(epochs=1, time_budget_s=3600, out_dir=str(tmp_path), **TINY)
    assert result.config.amp is False


def test_precision_is_not_timed_when_asked_for_or_without_a_budget(tmp_path, monkeypatch):
    timed = _pin_costs(monkeypatch, float32_epoch_s=1.0, bfloat16_epoch_s=0.1)
    assert train(epochs=1, out_dir=str(tmp_path / "a"), **TINY).config.amp is False  # no budget: float32
    assert train(epochs=1, time_budget_s=3600, amp=False, out_dir=str(tmp_path / "b"), **TINY).config.amp is False
    assert timed == []  # neither run timed the precisions
    monkeypatch.setattr(budget_module, "native_bfloat16", lambda: False)
    assert train(epochs=1, time_budget_s=3600, out_dir=str(tmp_path / "c"), **TINY).config.amp is False


def test_timing_both_precisions_leaves_the_run_untouched(tmp_path, monkeypatch):
    # The real probes (throwaway copies of model and optimizer, the random state restored), with the
    # outcome forced to float32: the weights are those of a run that timed nothing.
    monkeypatch.setattr(budget_module, "native_bfloat16", lambda: True)
    monkeypatch.setattr(budget_module, "AMP_MIN_SPEEDUP", math.inf)
    a = train(epochs=2, out_dir=str(tmp_path / "plain"), **TINY)
    b = train(epochs=2, time_budget_s=3600, out_dir=str(tmp_path / "budget"), **TINY)
    assert b.config.amp is False and b.planned_epochs == 2
    assert _states_equal(a.model.state_dict(), b.model.state_dict())


def test_the_choice_keeps_the_faster_of_two_float32_timings():
    # float32 timed cold (2.5 s), then bfloat16 (1.0 s), then float32 again (1.1 s): not 2.5x faster
    config = TrainConfig(model="m", epochs=10)
    timings = iter([EpochCost.uniform(2.5), EpochCost.uniform(1.0), EpochCost.uniform(1.1)])
    choice = budget_module.choose_precision(lambda amp: next(timings), config)
    assert choice.float32_epoch_s == 1.1 and choice.amp is False and choice.cost.first_epoch_s == 1.1


def test_the_choice_sentence_says_what_was_measured():
    on = PrecisionChoice(True, 2.0, 1.0, EpochCost.uniform(1.0))
    off = PrecisionChoice(False, 1.0, 2.0, EpochCost.uniform(1.0))
    assert on.speedup == 2.0 and "on" in on.sentence() and "--no-amp" in on.sentence()
    assert "off" in off.sentence() and "0.50x" in off.sentence() and "--amp" in off.sentence()


# ---------------------------------------------------------------- an epoch's cost by its side

COST = EpochCost(steps=10, val_s=1.0, small_side=64, small_step_s=0.1, final_side=128, final_step_s=0.4)
PROGRESSIVE = TrainConfig(model="m", epochs=40, image_size=128, progressive_resize=True, time_budget_s=100.0)


def test_an_epoch_costs_in_proportion_to_its_pixels_between_the_timed_sides():
    assert COST.epoch_seconds(64) == pytest.approx(2.0) and COST.epoch_seconds(128) == pytest.approx(5.0)
    # 96 px: (96^2 - 64^2) / (128^2 - 64^2) = 5/12 of the way from 0.1 to 0.4 s per step
    assert COST.step_seconds(96) == pytest.approx(0.1 + 5 / 12 * 0.3)


def test_a_progressive_run_is_weighed_over_its_sides_not_its_first_epoch():
    # What the precision choice compares: bfloat16's gain grows with the side (ResNet-18 x0.5: 1.25x
    # at 64 px, 1.7x at 128 px), so the mean over the schedule decides, not the first (smallest) epoch.
    sides = train_sides(PROGRESSIVE, 40)
    assert sides == [progressive_size(e, 40, 128) for e in range(40)] and sides[0] == 64 and sides[-1] == 128
    mean = mean_epoch_seconds(COST, PROGRESSIVE, 40)
    assert COST.epoch_seconds(64) < mean < COST.epoch_seconds(128)
    assert mean == pytest.approx(sum(COST.epoch_seconds(s) for s in sides) / 40)
    plain = TrainConfig(model="m", epochs=40, image_size=128, progressive_resize=False)
    assert train_sides(plain, 3) == [None] * 3 and mean_epoch_seconds(COST, plain, 40) == 5.0


def test_a_filled_budget_is_not_cut_at_a_multiple_of_the_default_epochs():
    # cifar10-10k's 8,000 training images: a default of 8 epochs, about 3.3 s each on two cores. The
    # 15 minutes hold about 272; the old cap (5x the default: 40) ended the budget after two minutes.
    config = TrainConfig(model="m", epochs=8, warmup_epochs=1.0, time_budget_s=15 * 60)
    assert budget_module.budget_plan(config, 3.3, fill=True).epochs == 272
    assert budget_module.budget_plan(config, 0.01, fill=True).epochs == budget_module.FILL_AT_MOST_EPOCHS


def test_the_choice_times_a_progressive_run_at_its_first_and_final_sides(tmp_path, monkeypatch):
    monkeypatch.setattr(budget_module, "native_bfloat16", lambda: True)
    seen: list[EpochCost] = []
    real = trainer_module.choose_precision

    def recording(measure, config):
        seen.extend([measure(False), measure(True)])
        return real(lambda amp: seen[amp], config)

    monkeypatch.setattr(trainer_module, "choose_precision", recording)
    result = train(**{**TINY, "data": "synthetic:classes=4,n=64,size=64", "batch_size": 16}, epochs=4,
                   time_budget_s=3600, out_dir=str(tmp_path))
    assert result.config.progressive_resize  # from scratch at 64 px: on by default
    assert [(c.small_side, c.final_side) for c in seen] == [(32, 64), (32, 64)]
    assert all(c.small_step_s > 0 and c.final_step_s > 0 for c in seen)


def test_only_tasks_measured_in_bfloat16_choose_it_by_timing():
    from cnnzoo.training.tasks import image, task_for_model
    from cnnzoo.training.tasks.linear_probe import LinearProbe

    assert image.ImageClassification.precision_by_timing
    assert not LinearProbe.precision_by_timing  # cached features: the head alone trains
    assert not task_for_model("wavenet_small").precision_by_timing  # not measured on series or audio
