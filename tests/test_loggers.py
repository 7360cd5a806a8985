"""TensorBoard and MLflow loggers, fed epoch records directly, read back with each tool's own reader:
TensorBoard's EventAccumulator and MLflow's MlflowClient on a local store."""
import sys

import pytest
from PIL import Image

from cnnzoo.checkpoint import EpochRecord
from cnnzoo.errors import UserError
from cnnzoo.training.loggers import MLflowLogger, TensorBoardLogger, open_loggers

TEST = {"test_loss": 1.1, "test_acc": 0.61, "test_images": 40}  # what the trainer scores at the end
CONFIG = {"model": "lenet5", "data": "digits", "epochs": 3, "lr": 0.05, "model_args": {"width_mult": 0.5},
          "weights": None}


def records():
    """Three epochs as the trainer would report them (the values matter only in being distinct)."""
    rows = []
    for epoch in (1, 2, 3):
        rows.append(EpochRecord(epoch=epoch, train={"loss": 2.0 / epoch, "acc": 0.3 + 0.1 * epoch},
                                val={"loss": 2.2 / epoch, "acc": 0.25 + 0.1 * epoch}, lr=0.05 / epoch,
                                epoch_time=1.5 + epoch / 10, throughput=1000.0 + epoch, elapsed=1.6 * epoch,
                                lr_groups={"backbone": 0.005 / epoch, "head": 0.05 / epoch}))
    return rows


def run_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "best.pt").write_bytes(b"weights")
    Image.new("RGB", (60, 40), (10, 120, 200)).save(folder / "curves.png")
    return [folder / "best.pt"], folder / "curves.png"


def test_tensorboard_events_hold_one_value_per_epoch_for_every_metric(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    artifacts, figure = run_files(tmp_path / "run")
    logger = TensorBoardLogger(tmp_path / "tb", run_name="lenet5-seed0")
    logger.start(CONFIG, tmp_path / "run", unit="image")
    for record in records():
        logger.log_epoch(record)
    logger.finish(artifacts, figure, status="completed", final_metrics=TEST)

    events = event_accumulator.EventAccumulator(str(tmp_path / "tb" / "lenet5-seed0"),
                                                size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    history = [record.to_dict("image") for record in records()]  # the rows history.json holds
    expected = {"loss/train": "train_loss", "loss/val": "val_loss", "acc/train": "train_acc", "acc/val": "val_acc",
                "lr": "lr", "time/epoch_s": "epoch_time", "time/elapsed_s": "elapsed",
                "throughput/images_per_s": "train_images_per_s"}
    tags = events.Tags()
    assert set(tags["scalars"]) == set(expected) | {"loss/test", "acc/test", "images/test", "lr/backbone", "lr/head"}
    for tag, column in expected.items():
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [1, 2, 3]
        assert [e.value for e in logged] == pytest.approx([row[column] for row in history], rel=1e-6)  # float32
    assert [(e.step, e.value) for e in events.Scalars("acc/test")] == [(3, pytest.approx(0.61))]  # the last epoch
    assert [e.value for e in events.Scalars("lr/backbone")] == pytest.approx([0.005, 0.0025, 0.005 / 3])
    curves = events.Images("curves")
    assert len(curves) == 1 and (curves[0].width, curves[0].height) == (60, 40)
    options = events.Tensors("options/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| model | lenet5 |" in options and '| model_args | {"width_mult": 0.5} |' in options


def test_mlflow_run_holds_the_options_the_metrics_and_the_artifacts(tmp_path, monkeypatch):
    tracking = pytest.importorskip("mlflow.tracking")
    # A local folder store, named as users name any store. (MLflow 3's default, SQLite, costs seconds of
    # schema migrations to create: the logger does nothing different with it.)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this to write a folder store
    artifacts, figure = run_files(tmp_path / "run")
    logger = MLflowLogger(experiment="digits-study", run_name="lenet5-seed0")
    logger.start(CONFIG, tmp_path / "run", unit="image")
    for record in records():
        logger.log_epoch(record)
    logger.finish(artifacts, figure, status="early_stopping", final_metrics=TEST)

    client = tracking.MlflowClient()  # the store $MLFLOW_TRACKING_URI names
    run = client.get_run(logger.run_id)
    assert run.info.run_name == "lenet5-seed0" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "digits-study"
    assert run.data.params["model"] == "lenet5" and run.data.params["lr"] == "0.05"
    assert run.data.params["model_args"] == '{"width_mult": 0.5}' and run.data.params["weights"] == "null"
    assert run.data.tags["cnnzoo.stopped_reason"] == "early_stopping"
    history = [record.to_dict("image") for record in records()]
    for column in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time", "train_images_per_s",
                   "elapsed"):
        logged = sorted(client.get_metric_history(run.info.run_id, column), key=lambda m: m.step)
        assert [(m.step, m.value) for m in logged] == [(row["epoch"], row[column]) for row in history]
    for name, value in TEST.items():
        assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)] == [(3, value)]
    assert len(client.get_metric_history(run.info.run_id, "lr_head")) == 3
    assert sorted(f.path for f in client.list_artifacts(run.info.run_id)) == ["best.pt", "curves.png"]


def test_without_the_packages_the_messages_name_the_extras(monkeypatch):
    for module in ("torch.utils.tensorboard", "mlflow", "mlflow.entities", "mlflow.tracking"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(UserError, match=r'--tensorboard needs the tensorboard package: '
                                        r'pip install "cnnzoo\[tensorboard\]"'):
        open_loggers(tensorboard="")
    with pytest.raises(UserError, match=r'--mlflow needs MLflow: pip install "cnnzoo\[mlflow\]"'):
        open_loggers(mlflow=True)
    assert not open_loggers()  # nothing asked, nothing imported


def test_tensorboard_defaults_to_the_run_folder_and_names_runs_under_a_shared_folder(tmp_path):
    pytest.importorskip("tensorboard")
    own = open_loggers(tensorboard="")  # --tensorboard without a folder
    own.start(CONFIG, tmp_path / "runs" / "r18", unit="image")
    own.log_epoch(records()[0])
    own.finish()
    assert list((tmp_path / "runs" / "r18").glob("events.out.tfevents.*"))
    for seed in (0, 1):  # compare: one run per model and seed in one folder, overlaid by TensorBoard
        shared = open_loggers(tensorboard=str(tmp_path / "tb"), run_name=f"lenet5-seed{seed}")
        shared.start(CONFIG, tmp_path / "runs" / f"seed{seed}")
        shared.finish()
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["lenet5-seed0", "lenet5-seed1"]
