"""Real comparisons on tiny synthetic data: artefacts, consistency with summary, failures, resume, Ctrl-C."""
import csv
import functools
import json
import re
import shutil
from html.parser import HTMLParser

import pytest
import torch

import cnnzoo
import cnnzoo.training
from cnnzoo.cli import compare_cmd, main
from cnnzoo.compare import LatencySettings, compare

DATA = "synthetic:classes=3,n=36,size=16"
MODELS = ["mobilenet_v1:width_mult=0.25", "mobilenet_v2:width_mult=0.25"]
EPOCHS = 2
FAST = dict(data=DATA, epochs=EPOCHS, batch_size=16, progress=False, device="cpu",
            latency=LatencySettings(repeats=2, warmup=1, batch_repeats=1), log=lambda line: None)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    return compare(MODELS, out_dir=out, **FAST), out


def test_every_artefact_is_written(two_models):
    result, out = two_models
    assert result.all_done
    for name in ("results.json", "results.csv", "report.md", "report.html",
                 "plots/accuracy_vs_epoch.png", "plots/accuracy_vs_macs.png"):
        assert (out / name).stat().st_size > 0, name
    for record in result.records:
        assert (out / record["slug"] / "history.json").is_file()


def test_numbers_agree_with_summary_and_the_run(two_models):
    result, out = two_models
    doc = json.loads((out / "results.json").read_text())
    rows = {r["name"]: r for r in csv.DictReader((out / "results.csv").open())}
    for record in doc["models"]:
        name, args = cnnzoo.registry.parse_model_spec(record["name"])
        model = cnnzoo.create_model(name, num_classes=3, **args)
        stats = cnnzoo.summary(model, input_size=(3, 16, 16))
        assert record["params"] == stats.total_params == sum(p.numel() for p in model.parameters())
        assert record["macs"] == stats.macs > 0
        assert len(record["history"]) == record["epochs_run"] == EPOCHS
        assert record["best_val_acc"] == max(h["val_acc"] for h in record["history"])
        assert record["final_val_acc"] == record["history"][-1]["val_acc"]
        assert record["latency_b1_ms"] > 0 and record["latency_batch_ms_per_image"] > 0
        assert record["weights_mb"] == pytest.approx(
            4e-6 * sum(t.numel() for t in list(model.parameters()) + list(model.buffers())
                       if t.is_floating_point()))
        assert int(rows[record["name"]]["params"]) == record["params"]
        assert float(rows[record["name"]]["best_val_acc"]) == pytest.approx(record["best_val_acc"])
    assert doc["data"]["train_images"] + doc["data"]["val_images"] == 36


def test_same_split_and_seed_for_every_model(two_models):
    result, _ = two_models
    data_settings = [r["settings"]["data"] for r in result.records]
    assert data_settings[0] == data_settings[1]
    assert {r["settings"]["seed"] for r in result.records} == {0}


def test_html_report_parses(two_models):
    _, out = two_models

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.open, self.bad = [], []

        def handle_starttag(self, tag, attrs):
            if any(k in ("src", "href") and v and not v.startswith("data:") for k, v in attrs):
                self.bad.append(dict(attrs))
            if tag not in ("meta", "img"):
                self.open.append(tag)

        def handle_endtag(self, tag):
            assert self.open.pop() == tag

    parser = Tags()
    parser.feed((out / "report.html").read_text())
    assert parser.open == [] and parser.bad == []


def _recording_train(fail=None, interrupt=None):
    """Wrap the real trainer: note which models it is asked for; make some fail or be interrupted.
    Returns the list of models asked for and the function to pass as ``train``."""
    real_train = cnnzoo.training.train
    called = []

    def wrapped(config, **kw):
        called.append(config.model)
        if config.model == fail:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if config.model == interrupt:
            raise KeyboardInterrupt
        return real_train(config, **kw)

    return called, wrapped


def _command_trains_with(monkeypatch, train):
    """`cnnzoo compare` as the command line runs it, each run trained by ``train``."""
    monkeypatch.setattr(compare_cmd, "compare", functools.partial(compare, train=train))


def test_resume_skips_finished_models_and_retrains_changed_ones(two_models, tmp_path):
    _, out = two_models
    before = json.loads((out / "results.json").read_text())["models"]
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    called, train = _recording_train(fail="mobilenet_v1")
    again = compare(MODELS, out_dir=copy, train=train, **FAST)
    assert called == [] and again.records == before  # nothing retrained, numbers reused as they were

    # A changed setting (here the seed) means a new run: the trainer is asked again (and, made to
    # fail here to keep the test short, the model is then reported failed).
    again = compare(MODELS[:1], out_dir=copy, train=train, **{**FAST, "seed": 1})
    assert called == ["mobilenet_v1"] and again.records[0]["status"] == "failed"


def test_a_failing_model_does_not_stop_the_others(tmp_path):
    called, train = _recording_train(fail="mobilenet_v1")
    result = compare(MODELS, out_dir=tmp_path, train=train, **FAST)
    first, second = result.records
    assert first["status"] == "failed" and "out of memory" in first["reason"]
    assert "OutOfMemoryError" in first["traceback"]
    assert second["status"] == "done" and len(second["history"]) == EPOCHS and not result.all_done
    assert "out of memory" in (tmp_path / "report.html").read_text()
    assert "out of memory" in (tmp_path / "report.md").read_text()

    # The re-run tries the failed model again, and only it.
    retried = compare(MODELS, out_dir=tmp_path, train=train, **FAST)
    assert called == ["mobilenet_v1", "mobilenet_v2", "mobilenet_v1"]
    assert retried.records[1] == second


def _cli(models, out, *extra):
    # The same settings as FAST, so the models of the fixture are reused, not retrained.
    return main(["compare", *models, "--data", DATA, "--epochs", str(EPOCHS), "--batch-size", "16",
                 "--device", "cpu", "--no-progress", "--out", str(out), *extra])


def test_ctrl_c_leaves_a_report_and_exits_130(two_models, tmp_path, monkeypatch):
    shutil.copytree(two_models[1], tmp_path / "out")
    _command_trains_with(monkeypatch, _recording_train(interrupt="resnet18")[1])
    code = _cli([*MODELS, "resnet18:width_mult=0.25", "mobilenet_v2:width_mult=0.5"], tmp_path / "out")
    assert code == 130
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [m["status"] for m in doc["models"]] == ["done", "done", "interrupted", "interrupted"]
    assert "not started" in doc["models"][3]["reason"]
    assert "interrupted" in (tmp_path / "out" / "report.html").read_text()


def test_cli_exit_code_progress_and_printed_table(two_models, tmp_path, monkeypatch, capsys):
    shutil.copytree(two_models[1], tmp_path / "out")
    real_train = cnnzoo.training.train

    def diverging(config, **kw):
        if config.model == "resnet18":
            from cnnzoo.training import TrainingDiverged
            raise TrainingDiverged("loss is nan at epoch 1")
        return real_train(config, **kw)

    _command_trains_with(monkeypatch, diverging)
    code = _cli([*MODELS, "resnet18:width_mult=0.25"], tmp_path / "out")
    out = capsys.readouterr().out
    assert code == 1
    assert "[1/3] mobilenet_v1:width_mult=0.25" in out and "[3/3] resnet18:width_mult=0.25" in out
    assert re.search(r"\| mobilenet_v1:width_mult=0\.25 +\| done ", out)
    assert re.search(r"\| resnet18:width_mult=0\.25 +\| failed ", out)
    assert "TrainingDiverged: loss is nan at epoch 1" in out
    md = (tmp_path / "out" / "report.md").read_text()
    assert len(re.findall(r"^\| \S+:width_mult=0\.25 +\|", md, re.M)) == 2 * 3  # the results and their details


def test_bad_model_spec_is_a_user_error_before_any_training(tmp_path, capsys):
    code = main(["compare", "resnet18", "nosuchnet", "--data", DATA, "--out", str(tmp_path)])
    assert code == 2 and "nosuchnet" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_a_sequence_model_is_refused_with_where_to_go_instead(tmp_path, capsys):
    code = main(["compare", "resnet18", "wavenet_small", "--data", DATA, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "'wavenet_small' is a sequence model" in err and "cnnzoo train wavenet_small" in err
    assert not (tmp_path / "results.json").exists()


def test_bad_training_option_is_refused_before_loading_data(tmp_path, capsys):
    code = main(["compare", "resnet18", "--lr", "-1", "--data", "/no/such/folder", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "lr must be a number more than zero" in err
    assert not (tmp_path / "results.json").exists()


def test_an_interrupted_model_continues_from_its_checkpoint(two_models, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(two_models[1], out)
    doc = json.loads((out / "results.json").read_text())
    finished = doc["models"][1]
    doc["models"][1] = {k: finished[k] for k in ("name", "slug", "model", "model_args", "settings")}
    doc["models"][1].update(status="interrupted", reason="stopped by Ctrl-C while training")
    (out / "results.json").write_text(json.dumps(doc))
    resumed = []
    real_train = cnnzoo.training.train

    def recording(config, **kw):
        resumed.append((config.model, config.resume))
        return real_train(config, **kw)

    result = compare(MODELS, out_dir=out, train=recording, **FAST)
    # Its last.pt already holds both epochs, so resuming trains nothing and gives back the same run.
    assert resumed == [("mobilenet_v2", True)]
    assert result.records[1]["status"] == "done"
    assert result.records[1]["history"] == finished["history"]


def test_ctrl_c_caught_by_the_trainer_still_stops_the_comparison(two_models, tmp_path):
    # The trainer catches Ctrl-C itself (to keep its checkpoint) and returns early; compare must
    # still stop, mark the model interrupted, and resume it next time.
    out = tmp_path / "out"
    shutil.copytree(two_models[1], out)
    real_train = cnnzoo.training.train

    def ctrl_c_after_first_epoch(config, **kw):
        def press_ctrl_c(record):
            raise KeyboardInterrupt

        return real_train(config, on_epoch_end=press_ctrl_c, **kw)

    with pytest.raises(KeyboardInterrupt):
        compare([*MODELS, "resnet18:width_mult=0.25"], out_dir=out, train=ctrl_c_after_first_epoch, **FAST)
    doc = json.loads((out / "results.json").read_text())
    assert [m["status"] for m in doc["models"]] == ["done", "done", "interrupted"]
    assert (out / "resnet18-width_mult-0.25" / "last.pt").is_file()


def test_time_budget_replaces_epochs(tmp_path):
    # A budget far below one epoch: the trainer finishes the first epoch, then stops (it checks
    # the budget at epoch boundaries), so the run has one epoch and says why it stopped.
    result = compare(MODELS[:1], out_dir=tmp_path, **{**FAST, "epochs": None, "time_budget_s": 0.001})
    record = result.records[0]
    assert record["status"] == "done" and record["epochs_run"] == 1
    assert record["stopped_reason"] == "time_budget" and record["settings"]["time_budget_s"] == 0.001
    assert "min per model" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("flag, expected", [((), None), (("--no-channels-last",), False),
                                            (("--channels-last",), True)])
def test_layout_flags_reach_the_trainer_and_unset_leaves_the_default(tmp_path, monkeypatch, flag, expected):
    seen = []

    def recording(config, **kw):
        seen.append(config.channels_last)
        from cnnzoo.training import TrainingDiverged
        raise TrainingDiverged("stop here: only the options matter")

    _command_trains_with(monkeypatch, recording)
    _cli(["resnet18:width_mult=0.25"], tmp_path / "out", *flag)
    assert seen == [expected]  # None: the trainer picks the layout for the device
