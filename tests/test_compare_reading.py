"""compare as a practitioner reads it: pretrained models at their weights' size, a results table
narrow enough to read, one recommendation, notes about the models compared only, one stylesheet,
and a time budget that never plans thousands of epochs."""
import re

import pytest

from cnnzoo.compare.analysis import recommended, verdict
from cnnzoo.compare.blocks import CSS, Note, to_html
from cnnzoo.compare.meta import settings_notes
from cnnzoo.compare.plan import FROM_DATA, FROM_OPTION, FROM_SPEC, FROM_WEIGHTS, model_image_size
from cnnzoo.compare.plots import PLOT_DPI, ROW_SIZE, WIDE, render_plots
from cnnzoo.compare.record import ModelRecord
from cnnzoo.compare.report import markdown_table, write_report
from cnnzoo.training import TrainConfig
from cnnzoo.training.budget import FILL_AT_MOST_EPOCHS, epochs_within_budget, fit_epochs_to_budget


def model(name, acc, macs, n=200, latency=1.0):
    history = [{"epoch": 1, "train_loss": 1.0, "train_acc": acc, "val_loss": 1.0, "val_acc": acc}]
    return ModelRecord(name=name, model=name.split(":")[0], params=macs // 100, macs=macs, weights_mb=macs / 1e8,
                       best_val_acc=acc, final_val_acc=acc, best_epoch=1, epochs_run=1, val_images=n,
                       latency_b1_ms=latency, latency_batch_ms_per_image=latency / 4, latency_batch_size=16,
                       train_time_s=1.0, time_per_epoch_s=1.0, train_images_per_s=100.0, history=history,
                       final_train_acc=acc, image_size=64)


# ---- 1. a pretrained model trains at its weights' input size ------------------------------------

def test_pretrained_weights_give_the_image_size_unless_the_spec_or_the_option_names_one():
    # 224 px: the centre crop torchvision's ImageNet weights were evaluated at (torchvision's model
    # tables, "ImageNet-1K ... crop_size 224"); Keras applications take 224 x 224 inputs by default.
    assert model_image_size("mobilenet_v3_small", None, None, "imagenet").size == 224
    keras = model_image_size("mobilenet_v2", None, None, "keras")
    assert (keras.size, keras.source) == (224, FROM_WEIGHTS)
    assert "mobilenet_v2:weights=keras trains at 224 px, the input size its keras weights" in keras.sentence(
        "mobilenet_v2:weights=keras")
    assert model_image_size("mobilenet_v2", 96, 128, "keras").size == 96                 # the spec's
    assert model_image_size("mobilenet_v2", 96, 128, "keras").source == FROM_SPEC
    assert model_image_size("mobilenet_v2", None, 128, "keras").source == FROM_OPTION    # --image-size
    plain = model_image_size("mobilenet_v2", None, None, None)
    assert (plain.size, plain.source, plain.sentence("mobilenet_v2")) == (None, FROM_DATA, "")


# ---- 2. the results table: the columns that decide ----------------------------------------------

def test_the_results_table_holds_the_deciding_columns_and_the_rest_goes_to_the_details(tmp_path):
    records = [model("mobilenet_v2:width_mult=0.5", 0.61, 20_000_000), model("mobilenet_v3_small", 0.58, 12_000_000)]
    header, rule, *rows = markdown_table(records).splitlines()
    assert [h.strip() for h in header.strip("|").split("|")] == [
        "model", "val acc %", "params", "MACs", "ms/img", "size MB", "train s"]
    assert all(len(line) <= 100 for line in [header, *rows])  # fits a terminal
    # numbers right-aligned, words left-aligned
    assert rule.split("|")[1].endswith("-") and all(c.endswith(":") for c in rule.split("|")[2:-1])
    assert "61.0 +- 6." in rows[0]  # the accuracy with half its 95 % interval on 200 images

    write_report(tmp_path, records, {"data": {"source": "flowers"}, "settings": {"seed": 0, "epochs": 1}})
    md = (tmp_path / "report.md").read_text()
    details = md[md.index("### Training and timing details"):]
    for moved in ("95 % interval", "final acc %", "best epoch", "s/epoch", "train img/s", "ms/img @batch"):
        assert moved in details and moved not in header


# ---- 3. one recommendation ----------------------------------------------------------------------

def test_the_verdict_makes_one_recommendation_with_its_reason():
    # On 200 images, tiny (76 %) is tied with the leader; mid is within a point of it. The cheapest
    # of the leader's ties (tiny) and the cheapest within a point (mid) are different models: the
    # verdict names one of them, once.
    records = [model("big", 0.80, 4_000_000_000), model("mid", 0.795, 300_000_000), model("tiny", 0.76, 50_000_000)]
    lines = verdict(records)
    picks = [line for line in lines if re.search(r"recommend|trade-off|cheapest of them", line, re.I)]
    assert len(picks) == 1, lines
    assert picks[0].startswith("Recommended: tiny (76.0 %") and recommended(records).name == "tiny"
    assert "indistinguishable within the noise from the most accurate, big" in picks[0]


# ---- 4. notes about the models compared ---------------------------------------------------------

def test_the_defaults_line_describes_only_the_models_compared():
    shared = TrainConfig(model="*", batch_size=16, seed=0)
    mobile = " ".join(settings_notes(shared, set(), 1, None, ["mobilenet_v2", "mobilenet_v3_small"]))
    assert "vgg" not in mobile.lower() and "cnnzoo train's defaults" in mobile
    with_vgg = " ".join(settings_notes(shared, set(), 1, None, ["vgg11_bn", "resnet18"]))
    assert "vgg11_bn (vgg family): optimizer adamw, lr 0.0001" in with_vgg and "The other models" in with_vgg
    given = " ".join(settings_notes(TrainConfig(model="*", batch_size=16, lr=0.01), {"lr"}, 1, None, ["vgg11_bn"]))
    assert "as given" in given and "adamw" not in given


# ---- 5. one stylesheet, one text face and size ---------------------------------------------------

def _declarations(css: str) -> list[tuple[str, str, str]]:
    """(selector, property, value) of every declaration."""
    out = []
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", css):
        for decl in body.split(";"):
            if ":" in decl:
                prop, value = decl.split(":", 1)
                out.append((" ".join(selectors.split()), prop.strip(), " ".join(value.split())))
    return out


def test_the_report_has_one_face_and_one_size_for_every_secondary_block():
    decls = _declarations(CSS)
    families = {(sel, value) for sel, prop, value in decls if prop == "font-family"}
    assert {value for _, value in families} <= {"var(--text)", "var(--mono)", "inherit"}
    assert [sel for sel, value in families if value == "var(--mono)"] == ["pre"]  # only preformatted text
    sizes = {sel: value for sel, prop, value in decls if prop == "font-size"}
    secondary = {sel: value for sel, value in sizes.items() if not re.fullmatch(r"(html|body|h[123])", sel)}
    assert set(secondary.values()) == {"var(--small)"}, secondary
    # `commands` in notes are code in HTML as in Markdown, not literal backticks in the text face
    assert "<code>" not in to_html([Note("a lone ` stays")], "t")
    assert "<code>cnnzoo evaluate</code>" in to_html([Note("see `cnnzoo evaluate`")], "t")


def test_plots_are_drawn_at_the_width_the_report_shows_them():
    # So the report never scales them and their text (one size: PLOT_STYLE) stays the page's small size.
    records = [model("a", 0.6, 2_000_000), model("b", 0.5, 1_000_000)]
    plots = render_plots(records)

    def width(png: bytes) -> int:
        return int.from_bytes(png[16:20], "big")  # the PNG header's IHDR width

    assert width(plots["accuracy_vs_macs"]) == round(ROW_SIZE[0] * PLOT_DPI) == 520
    assert width(plots["train_val_curves"]) == round(WIDE * PLOT_DPI) == 760


# ---- 6. a time budget without --epochs plans a sensible number of epochs -------------------------

def test_a_budget_filled_by_near_free_epochs_is_capped_and_the_log_says_why():
    # A linear probe on cached features: 1/64 s an epoch; 5 minutes would hold 19,200 epochs.
    config = TrainConfig(model="resnet18", epochs=60, warmup_epochs=1, time_budget_s=300)
    lines = []
    fitted = fit_epochs_to_budget(config, 1 / 64, lines.append, fill=True)
    assert fitted.epochs == FILL_AT_MOST_EPOCHS
    assert epochs_within_budget(config, 1 / 64, fill=True) == fitted.epochs  # compare plans the same
    assert "would hold 19,200" in lines[0] and f"{FILL_AT_MOST_EPOCHS} epochs (the most a budget fills" in lines[0]
    # An epoch count that was asked for is never exceeded, and a slow epoch still cuts it.
    assert fit_epochs_to_budget(config, 1 / 64, lines.append).epochs == 60
    assert fit_epochs_to_budget(config, 100.0, lines.append, fill=True).epochs == 3
    assert "capped" not in lines[-1] and "would hold" not in lines[-1]


@pytest.mark.parametrize("epoch_s", [0.0, 1e-12])
def test_a_degenerate_measurement_still_plans_a_bounded_run(epoch_s):
    config = TrainConfig(model="resnet18", epochs=8, warmup_epochs=1, time_budget_s=60)
    assert fit_epochs_to_budget(config, epoch_s, lambda line: None, fill=True).epochs == FILL_AT_MOST_EPOCHS


def test_compares_estimate_plans_as_the_trainer_does_and_says_when_one_epoch_overruns(monkeypatch):
    from cnnzoo import training
    from cnnzoo.compare.estimate import estimate_model

    config = TrainConfig(model="resnet18", epochs=60, warmup_epochs=1, time_budget_s=300, image_size=64,
                         batch_size=16)
    monkeypatch.setattr(training, "estimate_epoch_seconds", lambda config, task: 1 / 64)
    filled = estimate_model("m", config, task=None, fill=True)
    assert filled.epochs == FILL_AT_MOST_EPOCHS and "capped" in filled.note
    assert estimate_model("m", config, task=None).epochs == 60  # --epochs given: never more
    monkeypatch.setattr(training, "estimate_epoch_seconds", lambda config, task: 450.0)
    slow = estimate_model("m", config, task=None, fill=True)
    assert slow.epochs == 1 and "one epoch overruns it 1.5x" in slow.note


# ---- the same, through plan_comparison and run_plan (a fake train: nothing is trained) ------------

# compare/runner.py (not this change's file) calls model_image_size, settings_notes and
# estimate_model(..., fill=) once the patch in the change's report is applied; then remove this mark.
DATA = "synthetic:classes=3,n=36"


def quiet(line):
    pass


def test_a_pretrained_spec_is_planned_and_trained_at_its_weights_size(tmp_path):
    from cnnzoo.compare import plan_comparison, run_plan
    from cnnzoo.training import TrainingDiverged

    specs = ["mobilenet_v3_small:width_mult=0.25,weights=imagenet", "mobilenet_v2:width_mult=0.25"]
    plan = plan_comparison(specs, out_dir=tmp_path, data=DATA, epochs=1, batch_size=16, device="cpu", threads=1,
                           progress=False, log=quiet)
    sizes = [p.config.image_size for p in plan.models]
    assert sizes[0] == 224 and sizes[1] == plan.meta.data.image_size != 224
    notes = " ".join(plan.meta.notes)
    assert f"{specs[0]} trains at 224 px" in notes and "vgg" not in notes.lower()
    given = []

    def fake_train(config, *, data, progress):
        given.append(data.image_size)
        raise TrainingDiverged("stop here: only the data each run is given matters")

    run_plan(plan, train=fake_train, log=quiet)
    assert given == sizes
    assert "224 px" in (tmp_path / "report.md").read_text()


def test_compares_plan_fills_a_budget_as_the_trainer_does(tmp_path):
    from cnnzoo.compare import plan_comparison

    # 20 minutes for one tiny model on 36 images: far more epochs than are worth running.
    plan = plan_comparison(["mobilenet_v2:width_mult=0.25"], out_dir=tmp_path, data=DATA, image_size=16,
                           batch_size=16, device="cpu", threads=1, total_time_s=1200, progress=False, log=quiet)
    (planned,) = plan.models
    assert planned.estimate.epochs == FILL_AT_MOST_EPOCHS
    assert "capped" in planned.estimate.note
