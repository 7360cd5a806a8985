"""The comparison report from hand-made result records: Pareto front, verdict, and every artefact."""
import csv
import json
from html.parser import HTMLParser

import pytest

from cnnzoo.compare.analysis import best_trade_off, pareto_front, verdict
from cnnzoo.compare.plan import PLANS, choose_plan
from cnnzoo.compare.report import markdown_table, write_report
from cnnzoo.compare.results import find_reusable, jsonable, model_slug, read_results_json
from cnnzoo.errors import UserError


def record(name, acc, macs, latency_ms, status="done", epochs=3):
    history = [{"epoch": e, "val_acc": acc * e / epochs, "train_loss": 1.0 / e, "epoch_time": 0.5}
               for e in range(1, epochs + 1)]
    return {"name": name, "model": name.split(":")[0], "model_args": {}, "status": status,
            "params": int(macs / 10), "macs": int(macs), "weights_mb": macs / 2.5e6, "epochs_run": epochs,
            "train_time_s": 0.5 * epochs, "time_per_epoch_s": 0.5, "train_images_per_s": 1000.0,
            "latency_b1_ms": latency_ms, "latency_batch_ms_per_image": latency_ms / 4,
            "latency_batch_size": 32, "best_val_acc": acc, "final_val_acc": acc, "best_epoch": epochs,
            "history": history, "settings": {"seed": 0}}


def failed(name, reason="RuntimeError: out of memory"):
    return {"name": name, "model": name, "model_args": {}, "status": "failed", "reason": reason,
            "traceback": "Traceback (most recent call last):\n  ...\nRuntimeError: out of memory <&>"}


RECORDS = [
    record("big", acc=0.95, macs=4e9, latency_ms=30.0),
    record("mid", acc=0.945, macs=3e8, latency_ms=5.0),     # within 1 point of big at 13x fewer MACs
    record("small", acc=0.80, macs=5e7, latency_ms=8.0),     # cheapest in MACs, but slower than mid
    record("dominated", acc=0.70, macs=5e8, latency_ms=40.0),  # worse and dearer than mid on both
]


def test_pareto_front_keeps_only_undominated_models_cheapest_first():
    assert pareto_front(RECORDS, "macs") == ["small", "mid", "big"]
    # By latency, small (8 ms, 80 %) is beaten by mid (5 ms, 94.5 %).
    assert pareto_front(RECORDS, "latency_b1_ms") == ["mid", "big"]


def test_pareto_front_ignores_failed_models_and_keeps_ties():
    twins = [record("a", 0.9, 1e6, 1.0), record("b", 0.9, 1e6, 1.0), failed("c")]
    assert sorted(pareto_front(twins, "macs")) == ["a", "b"]


def test_best_trade_off_is_cheapest_within_one_point_of_the_best():
    assert best_trade_off(RECORDS)["name"] == "mid"
    assert best_trade_off(RECORDS, tolerance_points=20)["name"] == "small"
    assert best_trade_off([failed("x")]) is None


def test_verdict_names_most_accurate_fastest_one_recommendation_and_failures():
    lines = verdict(RECORDS + [failed("broken")])
    text = "\n".join(lines)
    assert "Most accurate: big (95.0 %" in text
    assert "Fastest: mid (5.00 ms" in text
    assert ("Recommended: mid (94.5 %, 300.00M MACs) - within 0.5 points of the most accurate, big (95.0 %, "
            "4.00G MACs), at 13.3x fewer MACs") in text
    assert "broken: failed - RuntimeError: out of memory" in text


def test_verdict_with_nothing_finished():
    assert verdict([failed("x")])[0].startswith("No model finished")


class StrictHTML(HTMLParser):
    """Collects tags, checks every non-void tag is closed in order, and notes external references."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.external, self.images, self.text = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            if value and not value.startswith("data:") and not value.startswith("#"):
                self.external.append(value)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "script":
            self.external.append("<script>")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> does not close <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_every_artefact_is_written_and_consistent(tmp_path):
    records = RECORDS + [failed("broken")]
    meta = {"data": {"source": "synthetic", "num_classes": 3, "train_images": 60, "val_images": 15,
                     "image_size": 16}, "settings": {"seed": 0, "epochs": 3}}
    paths = write_report(tmp_path, records, meta)
    for name in ("results.json", "results.csv", "report.md", "report.html", "plots/accuracy_vs_epoch.png",
                 "plots/accuracy_vs_time.png", "plots/accuracy_vs_macs.png", "plots/accuracy_vs_latency.png"):
        assert (tmp_path / name).is_file() and paths[name] == tmp_path / name
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "plots/accuracy_vs_macs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["format"] == "cnnzoo-compare" and [m["name"] for m in doc["models"]] == [
        "big", "mid", "small", "dominated", "broken"]
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [r["name"] for r in rows] == [m["name"] for m in doc["models"]]
    assert float(rows[1]["best_val_acc"]) == pytest.approx(0.945) and rows[4]["status"] == "failed"
    assert int(rows[0]["macs"]) == 4e9

    md = (tmp_path / "report.md").read_text()
    assert markdown_table(records) in md and "Recommended: mid" in md and "out of memory" in md
    assert "![Accuracy against compute (MACs)](plots/accuracy_vs_macs.png)" in md
    assert read_results_json(tmp_path / "results.json") == doc["models"]


def test_html_report_is_valid_and_self_contained(tmp_path):
    write_report(tmp_path, RECORDS + [failed("broken")], {"data": {"source": "synthetic"}, "settings": {}})
    html_text = (tmp_path / "report.html").read_text()
    parser = StrictHTML()
    parser.feed(html_text)
    parser.close()
    assert html_text.startswith("<!DOCTYPE html>")
    assert parser.errors == [] and parser.stack == []
    assert parser.external == []          # no http(s) links, no scripts: opens with no server
    assert len(parser.images) == 4 and all(s.startswith("data:image/png;base64,") for s in parser.images)
    text = " ".join(parser.text)
    assert "Most accurate: big" in text and "Recommended = the model with the fewest MACs" in text
    assert "RuntimeError: out of memory <&>" in text  # escaped in the source, intact when read


def test_markdown_table_has_one_row_per_model_and_aligned_columns():
    lines = markdown_table(RECORDS).splitlines()
    assert len(lines) == 2 + len(RECORDS)
    assert len({len(line) for line in lines}) == 1
    assert "| big " in lines[2] and "95.0" in lines[2] and "4.00G" in lines[2]


def test_reuse_needs_done_status_and_identical_settings():
    previous = [dict(record("a", 0.9, 1e6, 1.0), settings=jsonable({"epochs": 3, "args": (1, 2)})),
                failed("b")]
    assert find_reusable(previous, "a", {"epochs": 3, "args": (1, 2)}) is previous[0]
    assert find_reusable(previous, "a", {"epochs": 4, "args": (1, 2)}) is None
    assert find_reusable(previous, "b", {}) is None


def test_results_file_that_is_not_ours_is_refused(tmp_path):
    (tmp_path / "results.json").write_text('{"something": "else"}')
    with pytest.raises(UserError, match="not a cnnzoo comparison"):
        read_results_json(tmp_path / "results.json")


def test_model_slug_is_a_safe_folder_name():
    assert model_slug("mobilenet_v1:width_mult=0.5") == "mobilenet_v1-width_mult-0.5"
    assert model_slug("resnet18:norm=group,act=silu") == "resnet18-norm-group-act-silu"


def test_plans_grow_with_the_data():
    digits = choose_plan(1437, 32)
    assert digits.name == "small" and digits.epochs == 6  # ceil(8000 / 1437)
    assert choose_plan(50_000, 32).name == "medium"
    assert choose_plan(100_000, 224).name == "large"
    assert choose_plan(10, 16).epochs == PLANS[0].max_epochs


def test_default_output_folder_is_a_safe_name_per_data_source():
    from cnnzoo.cli.compare_cmd import default_out_dir

    assert str(default_out_dir("digits")) == "runs/compare-digits"
    assert str(default_out_dir("/data/flowers-mini/")) == "runs/compare-flowers-mini"
    assert str(default_out_dir("synthetic:classes=3,n=36")) == "runs/compare-synthetic-classes-3-n-36"
