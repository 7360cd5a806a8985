"""``cnnzoo summary``, ``profile`` and ``sweep`` end to end, and the latency API: shapes and sanity on
tiny inputs. Timings are never asserted (a shared CI machine makes them noise)."""
import csv
import io
import json

import pytest
import torch
from torch import nn

from cnnzoo.cli import main
from cnnzoo.errors import UserError
from cnnzoo.profiling import LatencyResult, measure_latency, measure_matmul_peak
from cnnzoo.profiling import profile as profile_module
from cnnzoo.profiling.sweep import sweep


@pytest.fixture
def small_peak(monkeypatch):
    # The real 2048^2 peak matmul takes seconds on a busy CI core; its *shape* is what is tested.
    monkeypatch.setattr(profile_module, "PEAK_MATMUL_SIZE", 128)


# ----------------------------------------------------------------------------- summary

def test_summary_table(capsys):
    assert main(["summary", "mobilenet_v1", "--width-mult", "0.5", "--num-classes", "10",
                 "--input-size", "3,32,32", "--keras"]) == 0
    out = capsys.readouterr().out
    for text in ("Layer (type)", "Output Shape", "Param #", "MACs", "Total params: 834,666",
                 "Trainable params: 823,722", "Non-trainable params: 10,944", "Keras convention",
                 "Params size (MB)", "Forward activations", "Not counted"):
        assert text in out
    assert out.count("=" * 40) >= 3


def test_summary_json_and_overrides(capsys):
    assert main(["summary", "resnet18", "--input-size", "64", "--json", "--norm", "group", "--flops"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["input_size"] == [3, 64, 64] and d["units"] == "flops" and d["depth"] is None
    assert d["flops"] == 2 * d["macs"] > 0
    assert d["rows"][0]["name"] == "input"
    assert any(r["type"] == "GroupNorm" for r in d["rows"])
    assert main(["summary", "resnet18", "--input-size", "64", "--json", "--depth", "1"]) == 0
    shallow = json.loads(capsys.readouterr().out)
    assert all(r["depth"] == 1 for r in shallow["rows"]) and len(shallow["rows"]) < len(d["rows"])
    assert sum(r["macs"] for r in shallow["rows"]) == shallow["macs"] == d["macs"]


def test_summary_passes_any_registry_override(capsys):
    assert main(["summary", "googlenet", "--large-branch-kernel", "5", "--norm", "none",
                 "--conv-bias", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_params"] == 6_998_552  # study notes' GoogLeNet


@pytest.mark.parametrize("argv,message", [
    (["summary", "resnet5"], "unknown model"),
    (["summary", "resnet18", "--colour", "red"], "colour"),
    (["summary", "vgg16", "--input-size", "3,8,8"], "input of size"),
])
def test_summary_bad_input_exits_2_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------- latency API

def test_measure_latency_result():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    model.train()
    threads = torch.get_num_threads()
    lat = measure_latency(model, (3, 16, 16), batch_size=4, repeats=5, warmup=1, threads=1)
    assert isinstance(lat, LatencyResult) and lat.threads == 1
    assert torch.get_num_threads() == threads and model.training  # both restored
    assert len(lat.times_s) == 5 and min(lat.times_s) <= lat.median_s <= max(lat.times_s)
    assert lat.spread_s >= 0
    assert lat.per_image_s == pytest.approx(lat.median_s / 4)
    assert lat.images_per_s == pytest.approx(4 / lat.median_s)
    weights_and_input = (8 * 27 + 8 + 3 * 8) * 4 + 4 * 3 * 16 * 16 * 4  # + BN stats, float32
    conv_output = 4 * 8 * 16 * 16 * 4
    assert lat.peak_memory_bytes >= weights_and_input + conv_output
    d = lat.to_dict()
    assert {"median_s", "spread_s", "per_image_s", "images_per_s", "peak_memory_bytes"} <= set(d)


def test_measure_latency_channels_last_and_bad_arguments():
    model = nn.Conv2d(3, 4, 3)
    lat = measure_latency(model, (3, 8, 8), repeats=2, warmup=0, channels_last=True)
    assert lat.channels_last and lat.median_s > 0
    with pytest.raises(UserError):
        measure_latency(model, (3, 8, 8), repeats=0)
    with pytest.raises(UserError, match="device"):
        measure_latency(model, (3, 8, 8), device="tpu")


def test_matmul_peak_is_a_positive_rate():
    assert measure_matmul_peak("cpu", size=128, repeats=2) > 0


# ----------------------------------------------------------------------------- profile

def test_profile_json(capsys, small_peak):
    assert main(["profile", "mobilenet_v2", "resnet18", "--width-mult", "0.25", "--input-size", "3,32,32",
                 "--batch-size", "1,2", "--repeat", "2", "--warmup", "1", "--threads", "1",
                 "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["matmul_peak_gflops"]["cpu"] > 0
    rows = report["results"]
    assert [(r["model"], r["batch_size"]) for r in rows] == [
        ("mobilenet_v2", 1), ("mobilenet_v2", 2), ("resnet18", 1), ("resnet18", 2)]
    for r in rows:
        assert r["device"] == "cpu" and r["input_size"] == [3, 32, 32] and r["threads"] == 1
        assert r["median_s"] > 0 and r["spread_s"] >= 0 and r["peak_memory_bytes"] > 0
        assert r["per_image_s"] == pytest.approx(r["median_s"] / r["batch_size"])
        expected = 2 * r["macs_per_image"] * r["batch_size"] / r["median_s"] / 1e9
        assert r["achieved_gflops"] == pytest.approx(expected)
        assert r["fraction_of_peak"] == pytest.approx(expected / report["matmul_peak_gflops"]["cpu"])
    assert rows[0]["macs_per_image"] < rows[2]["macs_per_image"]  # mobilenet is cheaper than resnet


def test_profile_table(capsys, small_peak):
    assert main(["profile", "resnet18", "--width-mult", "0.25", "--input-size", "32", "--repeat", "1",
                 "--warmup", "0", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for text in ("matrix-multiply peak", "ms/batch", "IQR ms", "images/s", "GFLOP/s", "% peak", "resnet18"):
        assert text in out


def test_profile_bad_model_exits_2(capsys):
    assert main(["profile", "resnet18", "nosuchnet"]) == 2
    assert "nosuchnet" in capsys.readouterr().err


# ----------------------------------------------------------------------------- sweep

def test_sweep_cells_follow_the_knobs():
    cells = sweep("mobilenet_v1", [1.0, 0.5], [64, 32], num_classes=10)
    by = {(c.width_mult, c.resolution): c for c in cells}
    assert len(cells) == 4
    assert by[(1.0, 64)].params == by[(1.0, 32)].params > by[(0.5, 64)].params  # params ignore resolution
    # MACs scale with the square of resolution (exactly here: every layer's map halves)...
    assert by[(1.0, 64)].macs > by[(1.0, 32)].macs > by[(0.5, 32)].macs
    # ...and roughly with the square of width (MobileNet paper, section 3.3)
    assert by[(0.5, 64)].macs / by[(1.0, 64)].macs == pytest.approx(0.25, rel=0.15)


def test_sweep_cli_writes_markdown_csv_and_png(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "mobilenet_v2", "--width-mult", "1,0.5", "--resolution", "64,32",
                 "--num-classes", "10", "--format", "csv", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(printed.split("wrote")[0])))
    assert [(float(r["width_mult"]), int(r["resolution"])) for r in rows] == [(1, 64), (1, 32), (0.5, 64), (0.5, 32)]
    assert all(int(r["macs"]) > 0 and int(r["params"]) > 0 for r in rows)
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "sweep.md").read_text()
    assert "| width_mult | resolution | Million MACs | Million params |" in markdown
    assert (out / "sweep.csv").read_text().count("\n") == 5
    assert not any(p.name.endswith(".tmp") or ".tmp." in p.name for p in out.iterdir())


def test_sweep_latency_column(capsys):
    assert main(["sweep", "mobilenet_v1", "--width-mult", "0.25", "--resolution", "32", "--latency",
                 "--repeat", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "latency ms (batch 1)" in out and "| 0.25 | 32 |" in out


def test_sweep_bad_arguments(capsys):
    assert main(["sweep", "mobilenet_v1", "--width-mult", "1,0"]) == 2
    assert "positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse's own exit for an unreadable value
        main(["sweep", "mobilenet_v1", "--resolution", "abc"])
    assert exit_info.value.code == 2 and "comma-separated integers" in capsys.readouterr().err


def test_sweep_out_must_be_a_directory(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    assert main(["sweep", "mobilenet_v1", "--resolution", "32", "--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err and target.read_text() == "keep me"
