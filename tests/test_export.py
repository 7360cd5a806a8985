"""Export: batch-norm folding, ONNX and pt2 round trips against eager PyTorch, int8 on trained
models, the `cnnzoo export` command and the bad inputs it must refuse."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from cnnzoo import train
from cnnzoo.checkpoint import build_model_from_checkpoint, load_checkpoint
from cnnzoo.cli import main
from cnnzoo.data import BatchLoader, load_dataset
from cnnzoo.export import (
    RUNTIMES,
    CpuInfo,
    OnnxRuntimeModule,
    conv_bn_pairs,
    export_onnx,
    export_pt2,
    fold_bn,
    load_pt2,
    prepare_runtime,
    quantize_int8,
    read_onnx_metadata,
    runtime_latency,
)
from cnnzoo.export.fold import count_batch_norms
from cnnzoo.export.pt2 import pt2_bytes
from cnnzoo.factory import create_model
from cnnzoo.profiling import LatencyResult
from cnnzoo.registry import list_models

DATA = "synthetic:classes=4,n=256,size=16"
SIZE = (3, 32, 32)
# Every registered image model goes to pt2 and ONNX (one torch.export trace feeds both). The dynamic
# batch (run at 1 and 3) and the save/load of the .pt2 file are checked on one model per family and
# block type (plain and batch-norm VGG, basic and bottleneck ResNet, GoogLeNet with its auxiliary
# heads); the others are exported with a fixed batch, which traces in about half the time.
ONE_PER_BLOCK_TYPE = ["vgg11", "vgg11_bn", "resnet18", "resnet50", "googlenet", "mobilenet_v1", "mobilenet_v2",
                      "densenet121"]
# The lightweight families (MobileNetV3, EfficientNet and -Lite, ShuffleNetV2, SqueezeNet) export one
# model per family in tests/test_models_lightweight.py: twenty-one more exports here would take minutes.
LIGHTWEIGHT_FAMILIES = ("mobilenet_v3", "efficientnet", "shufflenet", "squeezenet")
THE_OTHERS = [name for name in list_models(task="image")
              if name not in ONE_PER_BLOCK_TYPE and not name.startswith(LIGHTWEIGHT_FAMILIES)]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def small_model(name: str, seed: int = 0) -> nn.Module:
    """``name`` at width 0.25 with batch norms that have something to fold (random scale, shift and
    running statistics, where a fresh model has 1, 0, 0, 1) and a classifier scaled so that the
    largest logit is about 4, as a trained model's are: an absolute bound on logits then means what
    it says whatever the depth."""
    args = {"width_mult": 0.25, "num_classes": 10}
    if name == "googlenet":
        args["aux_logits"] = True
    torch.manual_seed(seed)
    model = create_model(name, **args).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t, low, high in ((m.weight, 0.5, 1.5), (m.bias, -0.5, 0.5), (m.running_mean, -0.5, 0.5),
                                     (m.running_var, 0.5, 2.0)):
                    t.copy_(torch.rand(t.shape, generator=gen) * (high - low) + low)
        fc = model.get_classifier()
        scale = 4 / model(torch.randn(8, *SIZE, generator=gen)).abs().max()
        fc.weight.mul_(scale)
        fc.bias.mul_(scale)
    return model


# --- batch-norm folding ---

@pytest.mark.parametrize("name", list_models(task="image"))
def test_fold_bn_computes_what_the_unfolded_model_computes(name):
    model = small_model(name)
    norms = count_batch_norms(model)
    folded = fold_bn(model)
    x = torch.randn(4, *SIZE)
    with torch.no_grad():
        want, got = model(x), folded(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert count_batch_norms(model) == norms  # the original is left as it was
    assert type(folded) is type(model) and hasattr(folded, "forward_features")
    if norms:
        assert count_batch_norms(folded) < norms


def test_fold_bn_folds_only_a_norm_that_reads_a_convolution_nothing_else_reads():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre_norm = nn.BatchNorm2d(4)               # before a conv: nothing to fold it into
            self.conv_a, self.norm_a = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)   # foldable
            self.conv_b, self.norm_b = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)  # conv_b's output is also added

        def forward(self, x):
            x = self.norm_a(self.conv_a(torch.relu(self.pre_norm(x))))
            y = self.conv_b(x)
            return self.norm_b(y) + y

    model = Block()
    with torch.no_grad():
        for norm in (model.pre_norm, model.norm_a, model.norm_b):
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
            norm.weight.uniform_(0.5, 1.5)
    model.eval()
    assert conv_bn_pairs(model) == [("conv_a", "norm_a")]
    folded = fold_bn(model)
    assert isinstance(folded.norm_a, nn.Identity) and isinstance(folded.norm_b, nn.BatchNorm2d)
    assert folded.conv_a.bias is not None
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=0)


# --- ONNX and pt2 round trips ---

@pytest.mark.parametrize("name", ONE_PER_BLOCK_TYPE)
def test_pt2_and_onnx_files_run_like_eager_at_batch_1_and_3_and_quantise(name):
    model = small_model(name)
    program = export_pt2(fold_bn(model), SIZE, dynamic_batch=True)
    pt2, meta = load_pt2(pt2_bytes(program, {"cnnzoo.model_name": name}))
    assert meta == {"cnnzoo.model_name": name}
    assert not any(key.startswith(("aux1.", "aux2.")) for key in program.state_dict)  # training-only heads
    fp32 = export_onnx(program, SIZE)  # from the same trace
    session = OnnxRuntimeModule(fp32.SerializeToString())
    for batch in (1, 3):
        x = torch.randn(batch, *SIZE)
        with torch.no_grad():
            want = model(x)
            torch.testing.assert_close(pt2.module()(x), want, atol=1e-4, rtol=0)
        torch.testing.assert_close(session(x), want, atol=1e-4, rtol=0)

    # int8 works for every family (its agreement with fp32 is tested on trained models below).
    int8 = quantize_int8(fp32, [torch.randn(8, *SIZE) for _ in range(2)])
    assert sum(n.op_type == "QuantizeLinear" for n in int8.graph.node) > 0
    assert int8.ByteSize() < 0.5 * fp32.ByteSize()
    out = OnnxRuntimeModule(int8.SerializeToString())(torch.randn(3, *SIZE))
    assert out.shape == (3, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", THE_OTHERS)
def test_every_other_model_exports_to_pt2_and_onnx(name):
    model = small_model(name)
    program = export_pt2(fold_bn(model), SIZE)
    session = OnnxRuntimeModule(export_onnx(program, SIZE).SerializeToString())
    x = torch.randn(1, *SIZE)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(program.module()(x), want, atol=1e-4, rtol=0)
    torch.testing.assert_close(session(x), want, atol=1e-4, rtol=0)


# --- trained checkpoints: the command end to end, int8 ---

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """resnet18 and mobilenet_v2, narrow, trained for a few epochs on the 4-class synthetic set."""
    out = {}
    for name, epochs in (("resnet18", 4), ("mobilenet_v2", 8)):  # about 80% validation accuracy or more
        folder = tmp_path_factory.mktemp(name)
        train(model=name, model_args={"width_mult": 0.25}, data=DATA, epochs=epochs, out_dir=str(folder),
              progress=False, device="cpu", threads=1)
        out[name] = folder / "best.pt"
    return out


def export_cli(*args) -> int:
    return main(["export", *map(str, args), "--threads", "1", "--repeat", "2", "--warmup", "1"])


def validation_images(checkpoint_path):
    ckpt = load_checkpoint(checkpoint_path)
    prep = ckpt.image.preprocessing
    data = load_dataset(DATA, image_size=prep.image_size, progress=False,
                        seed=ckpt.config.seed, val_fraction=ckpt.config.val_fraction)
    x, y = next(iter(BatchLoader(data.val, len(data.val), shuffle=False, mean=prep.mean, std=prep.std)))
    return x, y


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_int8_agrees_with_fp32_on_a_trained_model_and_is_smaller(runs, name, tmp_path, capsys):
    out = tmp_path / f"{name}.int8.onnx"
    assert export_cli(runs[name], "--quantize", "int8", "--calibration-data", DATA, "--dynamic-batch",
                      "--out", out, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verification"]["passed"] and report["accuracy"]["images"] > 40

    # Checked again here, independently of the command's own verification.
    quantized = onnx.load(str(out))
    ops = {node.op_type for node in quantized.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    x, y = validation_images(runs[name])
    eager = build_model_from_checkpoint(load_checkpoint(runs[name]))
    with torch.no_grad():
        fp32_top1 = eager(x).argmax(1)
    int8_top1 = OnnxRuntimeModule(out.read_bytes())(x).argmax(1)
    agreement = (fp32_top1 == int8_top1).float().mean().item()
    assert agreement >= 0.85, agreement
    assert (fp32_top1 == y).float().mean().item() > 0.6  # the model learned something to agree on
    assert report["accuracy"]["fp32"] == pytest.approx((fp32_top1 == y).float().mean().item())
    assert report["file_bytes"] == out.stat().st_size
    assert out.stat().st_size < 0.5 * report["fp32_file_bytes"]
    acc = report["accuracy"]
    flips = ((fp32_top1 == y) != (int8_top1 == y)).sum().item()
    assert acc["now_right"] + acc["now_wrong"] == flips
    assert acc["int8"] - acc["fp32"] == pytest.approx((acc["now_right"] - acc["now_wrong"]) / acc["images"])


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_int8_runs_as_integer_kernels_with_biases_kept_in_float(runs, name, tmp_path):
    """Biases are written in float32 (a third of the bytes of a quantised bias with its scale and
    zero point); onnxruntime must still fuse every convolution and the classifier into its integer
    kernels (QLinearConv, QGemm), quantising the bias itself, or the int8 file would run in float."""
    out = tmp_path / "model.int8.onnx"
    assert export_cli(runs[name], "--quantize", "int8", "--calibration-data", DATA, "--out", out) == 0
    quantized = onnx.load(str(out))
    assert not [t.name for t in quantized.graph.initializer if t.data_type == onnx.TensorProto.INT32]
    convs = sum(node.op_type == "Conv" for node in quantized.graph.node)

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    onnxruntime.InferenceSession(out.read_bytes(), options, providers=["CPUExecutionProvider"])
    fused = [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]
    assert fused.count("QLinearConv") == convs > 0
    assert "Conv" not in fused and fused.count("QGemm") == 1


def test_onnx_export_of_a_checkpoint_carries_its_classes_and_preprocessing(runs, capsys):
    ckpt_path = runs["resnet18"]
    assert export_cli(ckpt_path) == 0
    out = ckpt_path.with_suffix(".onnx")  # beside the checkpoint by default
    text = capsys.readouterr().out
    assert str(out) in text and "passed" in text and "onnxruntime fp32" in text
    meta = read_onnx_metadata(out)
    ckpt = load_checkpoint(ckpt_path)
    assert json.loads(meta["cnnzoo.class_names"]) == list(ckpt.image.class_names)
    assert json.loads(meta["cnnzoo.preprocessing"])["mean"] == pytest.approx(list(ckpt.image.preprocessing.mean))
    assert meta["cnnzoo.model_name"] == "resnet18"
    # Without --dynamic-batch the input takes exactly one image.
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == 1
    x, _ = validation_images(ckpt_path)
    eager = build_model_from_checkpoint(ckpt)
    with torch.no_grad():
        want = eager(x[:1]).numpy()
    np.testing.assert_allclose(session.run(None, {"images": x[:1].numpy()})[0], want, atol=1e-4)


def test_pt2_export_of_a_checkpoint_and_its_latency_table(runs, tmp_path, capsys):
    out = tmp_path / "model.pt2"
    assert export_cli(runs["mobilenet_v2"], "--format", "pt2", "--dynamic-batch", "--latency-batch", "8",
                      "--out", out) == 0
    text = capsys.readouterr().out
    assert "torch.export program" in text and "batch 8" in text and "PyTorch eager" in text
    _, meta = load_pt2(out)
    assert json.loads(meta["cnnzoo.class_names"]) == list(load_checkpoint(runs["mobilenet_v2"]).image.class_names)


def test_a_failed_verification_exits_1_and_writes_nothing(monkeypatch, tmp_path, capsys):
    import cnnzoo.export.pipeline as pipeline

    def broken_fold(model):
        folded = fold_bn(model)
        with torch.no_grad():
            folded.get_classifier().bias.add_(0.5)  # the kind of slip a wrong export makes
        return folded

    monkeypatch.setattr(pipeline, "fold_bn", broken_fold)
    out = tmp_path / "broken.onnx"
    assert export_cli("resnet18", "--width-mult", "0.25", "--num-classes", "10", "--image-size", "32",
                      "--out", out) == 1
    assert "verification failed" in capsys.readouterr().err
    assert not out.exists()


def test_int8_below_the_agreement_bar_says_what_it_costs_and_min_agreement_accepts_it(runs, monkeypatch, tmp_path,
                                                                                        capsys):
    import cnnzoo.export.pipeline as pipeline

    def favour_class_0(model):  # int8 (made from this) now picks class 0 for nearly every image
        folded = fold_bn(model)
        with torch.no_grad():
            folded.get_classifier().bias[0] += 100.0
        return folded

    monkeypatch.setattr(pipeline, "fold_bn", favour_class_0)
    out = tmp_path / "m.int8.onnx"
    args = (runs["mobilenet_v2"], "--quantize", "int8", "--calibration-data", DATA, "--out", out)
    assert export_cli(*args) == 1 and not out.exists()
    err = capsys.readouterr().err
    assert "Accuracy on those images: fp32" in err and "--min-agreement (now 0.9)" in err
    assert export_cli(*args, "--min-agreement", "0") == 0 and out.exists()
    assert "required: same top-1 class on at least 0% of the images - passed" in capsys.readouterr().out


# --- runtimes for profile and compare ---

@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_runtime_runs_like_eager_and_is_timed(runtime):
    prepared = prepare_runtime("resnet18", runtime, image_size=32, width_mult=0.25, num_classes=10, threads=1)
    # The torch runtimes run the model itself (folding is checked above); onnxruntime's are verified.
    assert (prepared.verification is None) == runtime.startswith("torch")
    assert prepared.verification is None or prepared.verification.passed
    result = prepared.latency(batch_size=2, repeats=2, warmup=1)
    assert isinstance(result, LatencyResult) and result.batch_size == 2 and result.median_s > 0
    assert result.threads == 1 and result.channels_last == (runtime == "torch-folded")


def test_int8_runtime_of_a_checkpoint_calibrates_on_its_own_data(runs):
    prepared = prepare_runtime(runs["resnet18"], "int8", threads=1)
    assert prepared.verification.inputs.endswith("validation images of " + DATA)
    assert prepared.verification.passed and prepared.verification.top1_agreement >= 0.9
    assert prepared.accuracy.images == prepared.verification.num_inputs
    assert abs(prepared.accuracy.int8 - prepared.accuracy.fp32) <= 1 - prepared.verification.top1_agreement
    assert prepared.latency(3, repeats=2, warmup=1).batch_size == 3


def test_runtime_latency_is_measure_latency_under_a_runtime():
    result = runtime_latency("mobilenet_v1", "onnxruntime", batch_size=2, image_size=32, width_mult=0.25,
                             repeats=2, warmup=1, threads=1)
    assert isinstance(result, LatencyResult) and result.batch_size == 2 and result.repeats == 2
    assert result.median_s > 0 and result.peak_memory_bytes is None  # onnxruntime's memory is its own


def test_the_cpu_is_described_by_its_dot_product_instructions():
    assert CpuInfo("x", 2, frozenset({"avx2", "avx512f"})).int8_dot_product is False
    vnni = CpuInfo("Xeon", 2, frozenset({"avx512_vnni", "avx2", "amx_int8"}))
    assert vnni.int8_dot_product and vnni.extensions == ["AVX2", "AVX-512 VNNI", "AMX-INT8"]
    assert "Xeon" in str(vnni)


# --- bad input: a clear message and exit status 2 ---

def test_bad_requests_are_refused_with_status_2(runs, tmp_path, capsys):
    cases = [
        (["resnet18", "--format", "pt2", "--quantize", "int8", "--calibration-data", DATA], "torchao"),
        (["resnet18", "--quantize", "int8"], "needs --calibration-data"),
        (["resnet18", "--opset", "13"], "between 18"),
        (["resnett18"], "Did you mean 'resnet18'"),
        ([runs["resnet18"], "--width-mult", "0.5"], "carries its model arguments"),
        (["missing/best.pt"], "does not exist"),
    ]
    for args, message in cases:
        assert export_cli(*args) == 2, args
        assert message in capsys.readouterr().err, args


def test_an_unknown_format_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "resnet18", "--format", "tflite"])
    assert exit_info.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err


def test_a_corrupt_or_malicious_checkpoint_is_refused_unread(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    assert export_cli(corrupt) == 2
    assert "cannot read" in capsys.readouterr().err

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # would create the marker file if unpickled

    malicious = tmp_path / "malicious.pt"
    torch.save({"format": "cnnzoo-checkpoint", "payload": Payload()}, malicious)
    assert export_cli(malicious) == 2
    assert "cannot read" in capsys.readouterr().err and not marker.exists()


def test_a_calibration_folder_without_images_is_refused(runs, tmp_path, capsys):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "notes.txt").write_text("no images here")
    assert export_cli(runs["resnet18"], "--quantize", "int8", "--calibration-data", tmp_path) == 2
    assert "no images" in capsys.readouterr().err


def test_without_the_export_extra_the_command_says_what_to_install(monkeypatch, capsys):
    import cnnzoo.export.extra as extra

    monkeypatch.setattr(extra, "find_spec", lambda name: None if name == "onnxruntime" else object())
    assert export_cli("resnet18") == 2
    err = capsys.readouterr().err
    assert "onnxruntime" in err and "pip install 'cnnzoo[export]'" in err


def test_profile_compares_runtimes_side_by_side_and_names_the_cpu(capsys):
    from cnnzoo.cli import main

    code = main(["profile", "mobilenet_v1", "--width-mult", "0.25", "--input-size", "3,32,32", "--batch-size", "1",
                 "--runtime", "torch,onnxruntime,int8", "--threads", "1", "--repeat", "2", "--warmup", "1"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("CPU: ")
    rows = [line for line in out.splitlines() if line.startswith("mobilenet_v1")]
    assert len(rows) == 3 and "[onnxruntime fp32]" in rows[1] and "[onnxruntime int8]" in rows[2]


def test_profile_rejects_an_unknown_runtime():
    import pytest

    from cnnzoo.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["profile", "mobilenet_v1", "--runtime", "tensorrt"])
    assert exit_info.value.code == 2


def test_compare_measures_latency_where_the_model_will_run(tmp_path):
    from cnnzoo.compare import LatencySettings, compare

    result = compare(["mobilenet_v1:width_mult=0.25"], out_dir=tmp_path, data="synthetic:classes=3,n=36,size=16",
                     epochs=1, batch_size=16, device="cpu", progress=False, log=lambda line: None,
                     latency=LatencySettings(repeats=2, warmup=1, batch_repeats=1, runtime="int8"))
    record = result.records[0]
    assert record["status"] == "done", record.get("reason")
    assert record["runtime"] == "onnxruntime int8" and record["latency_b1_ms"] > 0
    assert record["settings"]["latency_runtime"] == "int8"  # a PyTorch-timed result is not reused for it
    acc = record["runtime_accuracy"]  # the measured model (best weights) in fp32 and int8 on validation
    assert acc["images"] == record["val_images"] and acc["fp32"] == pytest.approx(record["best_val_acc"])
    assert acc["int8"] - acc["fp32"] == pytest.approx((acc["now_right"] - acc["now_wrong"]) / acc["images"])
    assert 0 <= acc["agreement"] <= 1
    report = (tmp_path / "report.md").read_text()
    assert "int8 acc % (change)" in report and "Latency under onnxruntime int8" in report
    assert "## int8 against fp32 (validation split)" in report


def test_compare_flags_int8_by_the_agreement_export_requires():
    from cnnzoo.compare.analysis import INT8_MIN_AGREEMENT
    from cnnzoo.export.verify import MIN_AGREEMENT

    assert INT8_MIN_AGREEMENT == MIN_AGREEMENT  # written twice: compare does not import cnnzoo.export


def test_export_by_name_starts_from_the_weights_given(tmp_path):
    import onnx

    from cnnzoo import create_model
    from cnnzoo.cli import main

    model = create_model("mobilenet_v1", width_mult=0.25, num_classes=3)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "m.onnx"
    assert main(["export", "mobilenet_v1", "--width-mult", "0.25", "--num-classes", "3", "--weights", str(weights),
                 "--image-size", "32", "--out", str(out), "--repeat", "1", "--warmup", "0"]) == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["cnnzoo.weights"] == f"weights {weights}"
