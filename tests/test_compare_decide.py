"""A comparison you can decide from: intervals, ties, repeats, over-fitting, per class, mistakes, the
plan and its budget, image size as an axis, the test split, logs fit for a file."""
import functools
import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from scipy.stats import binomtest

import cnnzoo
import cnnzoo.compare.runner
import cnnzoo.training
from cnnzoo.cli import compare_cmd, main
from cnnzoo.compare import LatencySettings, ModelRecord, compare, recommended, tied_with_best, verdict
from cnnzoo.compare.analysis import int8_cost_sentence, lead_lower_bound
from cnnzoo.compare.record import SeedRun, interval_over_images_and_seeds
from cnnzoo.errors import UserError
from cnnzoo.export.verify import Int8Accuracy
from cnnzoo.training.evaluate import accuracy_interval

DATA = "synthetic:classes=3,n=36,size=16"
TINY = "mobilenet_v1:width_mult=0.25"
FAST = dict(batch_size=16, progress=False, device="cpu", threads=1,
            latency=LatencySettings(repeats=2, warmup=1, batch_repeats=1), log=lambda line: None)


# ---- intervals, ties, over-fitting, the record: constructed results --------------------------------

@pytest.mark.parametrize("correct, n, low, high", [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat. Med. 17:857,
    # Table II, method 3 (Wilson score interval without continuity correction).
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_interval_matches_the_published_binomial_cases(correct, n, low, high):
    got = accuracy_interval(correct / n, n)
    assert got == pytest.approx((low, high), abs=5e-5)
    reference = binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert got == pytest.approx((reference.low, reference.high), abs=1e-9)
    assert accuracy_interval(0.5, 0) is None


def test_seed_spread_widens_the_interval_only_when_it_is_the_larger_noise():
    wilson = accuracy_interval(0.8, 10_000)
    assert interval_over_images_and_seeds(0.8, 10_000, None) == wilson
    assert interval_over_images_and_seeds(0.8, 10_000, 0.0001) == wilson
    assert interval_over_images_and_seeds(0.8, 10_000, 0.03) == pytest.approx((0.74, 0.86))


@pytest.mark.parametrize("a, n_a, b, n_b, lower", [
    # Newcombe (1998), "Interval estimation for the difference between independent proportions",
    # Stat. Med. 17:873, Table II, method 10 (square-and-add of Wilson intervals), examples (a) and (b).
    (56, 70, 48, 80, 0.0524), (9, 10, 3, 10, 0.1705)])
def test_the_lead_interval_matches_the_published_difference_cases(a, n_a, b, n_b, lower):
    leader = ModelRecord(name="a", best_val_acc=a / n_a, val_images=n_a)
    other = ModelRecord(name="b", best_val_acc=b / n_b, val_images=n_b)
    assert lead_lower_bound(leader, other) == pytest.approx(lower, abs=5e-5)
    assert lead_lower_bound(leader, ModelRecord(name="c", best_val_acc=0.5)) is None  # no image count


def model(name, acc, macs, n=736, std=None, train_acc=None, latency=1.0):
    history = [{"epoch": 1, "train_loss": 1.0, "train_acc": train_acc if train_acc is not None else acc,
                "val_loss": 1.0, "val_acc": acc}]
    return ModelRecord(name=name, model=name.split(":")[0], params=macs // 100, macs=macs, best_val_acc=acc,
                       final_val_acc=acc, best_epoch=1, epochs_run=1, val_images=n, best_val_acc_std=std,
                       latency_b1_ms=latency, train_time_s=1.0, history=history,
                       final_train_acc=train_acc if train_acc is not None else acc)


def test_leaders_within_the_noise_are_a_tie_and_the_cheaper_is_named():
    # The flowers numbers: 74.6 % against 73.9 % on 736 images is no win.
    records = [model("vgg11_bn", 0.746, 2_000_000_000), model("resnet18", 0.739, 1_000_000_000),
               model("small", 0.55, 100_000_000)]
    assert [r.name for r in tied_with_best(records)] == ["vgg11_bn", "resnet18"]
    text = "\n".join(verdict(records))
    assert "no clear winner - vgg11_bn" in text and "resnet18 (73.9 %" in text
    assert ("Recommended: resnet18 (73.9 %, 95 % interval 70.6-76.9, 1.00G MACs) - indistinguishable within the "
            "noise from the most accurate, vgg11_bn (74.6 %, 2.00G MACs), at 2.0x fewer MACs") in text
    assert recommended(records).name == "resnet18"

    # The same gap on 100,000 images is beyond the noise: a winner, said to be clear.
    big = [model("vgg11_bn", 0.746, 2_000_000_000, n=100_000), model("resnet18", 0.739, 1_000_000_000, n=100_000)]
    assert [r.name for r in tied_with_best(big)] == ["vgg11_bn"]
    assert ("Most accurate: vgg11_bn (74.6 % best validation accuracy, 95 % interval 74.3-74.9, epoch 1)"
            in verdict(big)[0])
    assert "ahead of resnet18 (73.9 %) beyond the noise" in verdict(big)[0]
    assert recommended(big).name == "resnet18"  # 0.7 points: within a point, at half the MACs

    # Seeds that disagree by 2 points make a 4-point lead on 10,000 images a tie again.
    steady = [model("a", 0.80, 2_000_000, n=10_000), model("b", 0.76, 1_000_000, n=10_000)]
    shaky = [model("a", 0.80, 2_000_000, n=10_000, std=0.02), model("b", 0.76, 1_000_000, n=10_000, std=0.02)]
    assert len(tied_with_best(steady)) == 1 and len(tied_with_best(shaky)) == 2
    assert "a (80.0 +- 2.0 % across seeds, 95 % interval 76.0-84.0)" in verdict(shaky)[0]


def test_overfitting_is_flagged_above_the_stated_gap():
    records = [model("memoriser", 0.70, 10_000, train_acc=0.99), model("honest", 0.70, 20_000, train_acc=0.75)]
    lines = [line for line in verdict(records) if line.startswith("Over-fitting")]
    assert lines == ["Over-fitting: memoriser - training accuracy 99.0 % against 70.0 % on validation at the "
                     "last epoch (29.0 points apart)."]


def test_int8_is_flagged_when_it_costs_a_point_or_agrees_too_little():
    def record(fp32, int8, wrong, right, agreement):
        return ModelRecord(name="m", best_val_acc=fp32, latency_b1_ms=1.0, runtime="onnxruntime int8",
                           runtime_accuracy=Int8Accuracy(fp32=fp32, int8=int8, images=60, became_wrong=wrong,
                                                         became_right=right),
                           int8_agreement=agreement)
    assert int8_cost_sentence(record(0.5, 0.5, 1, 1, 0.95)) is None
    assert int8_cost_sentence(record(0.5, 0.5 - 1 / 120, 1, 0, 0.95)) is None  # half a point: within the rule
    costly = int8_cost_sentence(record(0.5, 0.45, 3, 0, 0.95))
    assert costly.startswith("int8 cost: m - 50.0 % in fp32, 45.0 % in int8 (3 validation images became wrong")
    assert int8_cost_sentence(record(0.5, 0.5, 2, 2, 0.85))  # no net loss, but far from fp32
    assert any(line.startswith("int8 cost: m") for line in verdict([record(0.5, 0.45, 3, 0, 0.95)]))
    assert "45.0 % in int8" in next(line for line in verdict([record(0.5, 0.45, 3, 0, 0.95)])
                                    if line.startswith("Fastest"))


def test_the_record_serialises_once_and_reads_back_equal():
    record = model("a:width_mult=0.5", 0.8, 1000)
    record.runs = [SeedRun(seed=0, best_val_acc=0.8, final_val_acc=0.7, best_epoch=1, epochs_run=1,
                           train_time_s=1.5, stopped_reason="completed", run_dir="x", history=record.history)]
    as_json = json.loads(json.dumps(record.to_dict()))
    again = ModelRecord.from_dict(as_json)
    assert again == record and again.to_dict() == as_json
    assert again["name"] == "a:width_mult=0.5" and again.slug == "a-width_mult-0.5"
    # A version-1 record (flat fields only) reads, the new fields absent.
    old = ModelRecord.from_dict({"name": "b", "status": "done", "best_val_acc": 0.5, "history": []})
    assert old.runs == [] and old.interval() is None and old.per_class is None
    with pytest.raises(UserError):
        ModelRecord.from_dict({"status": "done"})


# ---- repeats, per class, mistakes, plan, logs: one real CLI run, output redirected to a file -------

class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def repeated(tmp_path_factory):
    """`cnnzoo compare` with two seeds, both output streams going to a file, as under nohup or CI."""
    out = tmp_path_factory.mktemp("repeats")
    log = out / "log.txt"
    with open(log, "w") as stream:
        code = subprocess.run([sys.executable, "-m", "cnnzoo", "compare", TINY, "resnet18:width_mult=0.25",
                               "--data", DATA, "--repeats", "2", "--epochs", "2", "--batch-size", "16",
                               "--device", "cpu", "--threads", "1", "--out", str(out / "cmp")],
                              stdout=stream, stderr=subprocess.STDOUT, timeout=300).returncode
    assert code == 0, log.read_text()
    return out / "cmp", log.read_text()


def test_redirected_output_has_no_carriage_returns_and_one_line_per_epoch(repeated):
    _, text = repeated
    assert "\r" not in text
    assert len(re.findall(r"^epoch +\d+/2 ", text, re.M)) == 2 * 2 * 2  # models x seeds x epochs


def test_the_plan_is_printed_before_training_with_a_total(repeated):
    _, text = repeated
    plan_at, first_training = text.index("plan (estimated"), text.index("training 2 times")
    assert plan_at < first_training
    plan = text[plan_at:first_training]
    assert re.search(r"^mobilenet_v1:width_mult=0\.25 +16 +16 +2 +[\d.]+ +2 +[\d.]+ s", plan, re.M)
    assert re.search(r"^total +[\d.]+ s", plan, re.M)


def test_repeats_give_n_histories_and_mean_and_std(repeated):
    out, _ = repeated
    doc = json.loads((out / "results.json").read_text())
    assert doc["version"] == 2 and doc["repeats"] == 2
    for raw in doc["models"]:
        record = ModelRecord.from_dict(raw)
        assert [run.seed for run in record.runs] == [0, 1] and raw["settings"]["repeats"] == 2
        for run in record.runs:
            assert len(run.history) == run.epochs_run == 2
            assert run.best_val_acc == max(h["val_acc"] for h in run.history)
            saved = json.loads((out / record.slug / f"seed-{run.seed}" / "history.json").read_text())
            assert saved["config"]["seed"] == run.seed and saved["epochs"] == run.history
        accs = [run.best_val_acc for run in record.runs]
        assert record.best_val_acc == pytest.approx(np.mean(accs))
        assert record.best_val_acc_std == pytest.approx(np.std(accs, ddof=1))
        assert record.history == record.runs[0].history
        assert record.estimated_s > 0 and record.total_train_time_s == pytest.approx(
            sum(run.train_time_s for run in record.runs))
        low, high = record.interval()
        assert low <= record.best_val_acc <= high


def test_per_class_and_confusion_matrix_agree_with_cnnzoo_evaluate(repeated, capsys):
    out, _ = repeated
    for raw in json.loads((out / "results.json").read_text())["models"]:
        record = ModelRecord.from_dict(raw)
        best = out / record.slug / "seed-0" / "best.pt"
        assert main(["evaluate", str(best), "--json", "--device", "cpu", "--out", str(out / "eval")]) == 0
        evaluated = json.loads(capsys.readouterr().out)
        assert evaluated["split"] == "val" and evaluated["num_images"] == record.val_images
        assert evaluated["confusion_matrix"] == record.per_class.confusion_matrix
        assert [c["recall"] for c in evaluated["per_class"]] == record.per_class.accuracy
        matrix = np.array(record.per_class.confusion_matrix)
        wrong = int(matrix.sum() - np.trace(matrix))
        assert len(record.per_class.misclassified) == min(wrong, 16)
        confidences = [m.confidence for m in record.per_class.misclassified]
        assert confidences == sorted(confidences, reverse=True)


def test_report_shows_seeds_curves_per_class_and_the_gallery_of_the_recommended_model(repeated):
    out, _ = repeated
    records = [ModelRecord.from_dict(m) for m in json.loads((out / "results.json").read_text())["models"]]
    pick = recommended(records)
    page = Page()
    page.feed((out / "report.html").read_text())
    text = " ".join(page.text)
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert "train_val_curves.png" in plots
    thumbnails = [i for i in page.images if i["alt"].startswith("validation image")]
    assert len(thumbnails) == len(pick.per_class.misclassified)
    assert len(page.images) == len(plots) + len(thumbnails)  # every plot, and the gallery, inline
    for shown, mistake in zip(thumbnails, pick.per_class.misclassified):
        assert shown["src"] == "data:image/png;base64," + mistake.thumbnail_png
    for heading in ("Plan: estimated and actual time", "Over-fitting", "Per class (validation split)",
                    f"Mistakes of the recommended model, {pick.name}", "Seeds", "Ties: a model is"):
        assert heading in text, heading
    md = (out / "report.md").read_text()
    squeezed = re.sub(" +", " ", md)
    assert re.search(r"\| model \| val acc % \| params \|", squeezed)  # the deciding table
    assert re.search(r"\| model \| 95 % interval \| \+- seeds \|", squeezed)  # the details, the seeds' spread
    assert "seeds 0-1" in md


# ---- image size as an axis, the test split, the shared budget ----------------------------------------

@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """train/ and test/ folders of three colour classes (20 px PNGs)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    colours = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}
    for split, count in (("train", 12), ("test", 4)):
        for name, colour in colours.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(colour, 40, (20, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_image_size_in_a_spec_trains_at_that_size_each_size_loaded_once_and_cached(photo_folder, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setenv("CNNZOO_CACHE", str(tmp_path / "cache"))
    loads = []
    real_load = cnnzoo.compare.runner.load_dataset

    def counting(*args, **kw):
        loads.append(kw["image_size"])
        return real_load(*args, **kw)

    monkeypatch.setattr(cnnzoo.compare.runner, "load_dataset", counting)
    specs = [TINY, f"{TINY},image_size=24", "mobilenet_v1:width_mult=0.5,image_size=24"]
    result = compare(specs, out_dir=tmp_path / "out", data=str(photo_folder), image_size=16, epochs=1, **FAST)
    assert result.all_done and loads == [16, 24]
    sizes = {}
    for record in result.models:
        size = record.image_size
        sizes[record.name] = size
        assert record.train_config["image_size"] == size and record.settings["data"]["image_size"] == size
        assert "image_size" not in record.model_args
        stats = cnnzoo.summary(cnnzoo.create_model("mobilenet_v1", num_classes=3, **record.model_args),
                               input_size=(3, size, size))
        assert record.macs == stats.macs
        # the folder's test/ split: scored with the best weights, reported beside validation
        assert record.test_images == 12 and 0 <= record.test_acc <= 1
        assert record.test_acc_low <= record.test_acc <= record.test_acc_high
    assert sizes == {TINY: 16, f"{TINY},image_size=24": 24, "mobilenet_v1:width_mult=0.5,image_size=24": 24}
    caches = sorted((tmp_path / "cache" / "folders").iterdir())
    assert len(caches) == 2  # one prepared folder per size
    stamps = {p: p.stat().st_mtime_ns for c in caches for p in c.iterdir()}

    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Width and resolution" in md and "test acc %" in md
    assert (tmp_path / "out" / "plots" / "width_and_resolution.png").stat().st_size > 0
    assert "16, 24 px" in md

    # Again: every model reused, each size read back from its cache, nothing prepared anew.
    loads.clear()
    compare(specs, out_dir=tmp_path / "out", data=str(photo_folder), image_size=16, epochs=1,
            train=lambda *a, **k: pytest.fail("retrained"), **FAST)
    assert loads == [16, 24]
    assert {p: p.stat().st_mtime_ns for c in caches for p in c.iterdir()} == stamps


def test_total_time_is_shared_equally_and_goes_with_neither_epochs_nor_time_budget(tmp_path):
    budgets = []

    def recording(config, **kw):
        budgets.append((config.model, config.seed, config.time_budget_s))
        raise cnnzoo.training.TrainingDiverged("stop here: only the budget matters")

    lines = []
    result = compare([TINY, "resnet18:width_mult=0.25"], out_dir=tmp_path, data=DATA, total_time_s=60,
                     train=recording, **{**FAST, "log": lines.append})
    # Two models, one seed each: 30 s apiece; the failure of the first stops the seeds of that model.
    assert budgets == [("mobilenet_v1", 0, 30.0), ("resnet18", 0, 30.0)]
    assert all(r.settings["time_budget_s"] == 30.0 for r in result.models)
    plan = next(line for line in lines if line.startswith("plan"))
    assert "budget 0.5 min per run" in plan and "budget 60 s" in plan
    assert "1 min in all (0.5 min per model)" in (tmp_path / "report.md").read_text()

    for extra in (["--epochs", "3"], ["--time-budget", "1"]):
        assert main(["compare", TINY, "--data", DATA, "--total-time", "1", "--out", str(tmp_path / "x"),
                     *extra]) == 2
    assert not (tmp_path / "x" / "results.json").exists()


def test_quiet_is_an_alias_of_no_progress(tmp_path, monkeypatch):
    seen = []

    def recording(config, **kw):
        seen.append(kw["progress"])
        raise cnnzoo.training.TrainingDiverged("stop")

    # the command as the command line runs it, each run trained by `recording`
    monkeypatch.setattr(compare_cmd, "compare", functools.partial(compare, train=recording))
    for flag in ("--quiet", "--no-progress"):
        main(["compare", TINY, "--data", DATA, "--epochs", "1", "--threads", "1", "--out", str(tmp_path), flag])
    assert seen == [False, False]
