"""The new data sources and run loggers through the command line: a CSV label list with its
validation list, TensorBoard events of train and compare read back with TensorBoard's own reader,
and an MLflow run read back with MlflowClient from a local store. Data are written by the tests."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from cnnzoo.cli import main

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
TINY = ["--width-mult", "0.25", "--quiet", "--device", "cpu", "--threads", "1", "--batch-size", "8",
        "--image-size", "16"]
SYNTHETIC = "synthetic:classes=3,n=36,size=16"


def _label_lists(root):
    """root/img/<colour>_<i>.png, a train list and a test list (path,label)."""
    (root / "img").mkdir(parents=True)
    rows = {"train": [], "test": []}
    for name, colour in COLOURS.items():
        for i in range(8):
            path = root / "img" / f"{name}_{i}.png"
            Image.new("RGB", (20, 20), colour).save(path)
            rows["train" if i < 6 else "test"].append(f"img/{path.name},{name}")
    for split, lines in rows.items():
        (root / f"{split}.csv").write_text("\n".join(["path,label", *lines]) + "\n")
    return root / "train.csv", root / "test.csv"


def test_train_on_a_csv_label_list_with_its_validation_list(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNZOO_CACHE", str(tmp_path / "cache"))
    train_csv, test_csv = _label_lists(tmp_path / "data")
    out = tmp_path / "run"
    code = main(["train", "resnet18", "--data", str(train_csv), "--val-data", str(test_csv), "--epochs", "1",
                 "--out", str(out), *TINY])
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    assert history["config"]["val_data"] == str(test_csv) and len(history["epochs"]) == 1

    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nnot/there.png,red\n")
    assert main(["train", "resnet18", "--data", str(bad), "--epochs", "1", "--out", str(tmp_path / "bad"), *TINY]) == 2


def _scalars(folder):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return events


def _assert_events_match_history(folder, run_dir):
    events = _scalars(folder)
    rows = json.loads((run_dir / "history.json").read_text())["epochs"]
    for tag, column in {"loss/train": "train_loss", "acc/val": "val_acc", "lr": "lr"}.items():
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [row["epoch"] for row in rows]
        assert [e.value for e in logged] == pytest.approx([row[column] for row in rows], rel=1e-6)  # float32


def test_tensorboard_on_train_and_on_compare_and_mlflow_on_compare(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    tracking = pytest.importorskip("mlflow.tracking")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    run = tmp_path / "run"
    assert main(["train", "resnet18", "--data", SYNTHETIC, "--epochs", "2", "--out", str(run), "--tensorboard",
                 *TINY]) == 0
    _assert_events_match_history(run, run)  # no DIR: the run folder

    out = tmp_path / "cmp"
    assert main(["compare", "resnet18:width_mult=0.25", "--data", SYNTHETIC, "--epochs", "2", "--batch-size", "8",
                 "--device", "cpu", "--threads", "1", "--no-progress", "--out", str(out), "--tensorboard",
                 "--tta", "--mlflow"]) == 0
    # one run per model and seed under <out>/tensorboard, so that runs overlay
    board = out / "tensorboard" / "resnet18-width_mult-0.25-seed0"
    _assert_events_match_history(board, out / "resnet18-width_mult-0.25")
    (model,) = json.loads((out / "results.json").read_text())["models"]
    assert 0.0 <= model["tta_acc"] <= 1.0  # --tta: one more column
    # MLflow: an experiment named after the comparison's folder, a run per model and seed, and the report
    client = tracking.MlflowClient()
    experiment = client.get_experiment_by_name("cmp")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"resnet18-width_mult-0.25-seed0", "report"}
    assert "report.md" in {f.path for f in client.list_artifacts(runs["report"].info.run_id)}


def test_mlflow_run_read_back_from_a_local_store(tmp_path, monkeypatch):
    tracking = pytest.importorskip("mlflow.tracking")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this to write a folder store
    run_dir = tmp_path / "run"
    assert main(["train", "resnet18", "--data", SYNTHETIC, "--epochs", "2", "--out", str(run_dir), "--mlflow",
                 *TINY]) == 0
    client = tracking.MlflowClient()
    experiment = client.get_experiment_by_name("cnnzoo")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["model"] == "resnet18"
    rows = json.loads((run_dir / "history.json").read_text())["epochs"]
    logged = sorted(client.get_metric_history(run.info.run_id, "val_acc"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in logged] == [(row["epoch"], row["val_acc"]) for row in rows]
    assert {"best.pt", "history.json", "curves.png"} <= {f.path for f in client.list_artifacts(run.info.run_id)}
