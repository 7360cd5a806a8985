"""Keras' weights in, Keras' outputs out: each covered keras.applications network, built by Keras 3 with
random weights and random batch-norm statistics, saved as the legacy HDF5 that keras.applications
publishes and as Keras 3's .weights.h5, loaded by cnnzoo and run on the same input.

Keras' softmax head is matched by building it with ``classifier_activation=None``: both sides give
logits. Keras runs on its PyTorch backend (``KERAS_BACKEND`` is set before keras is imported).
"""
import dataclasses
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras", reason="keras (the [dev] extra) is not installed")
h5py = pytest.importorskip("h5py", reason="h5py (the [dev] extra) is not installed")
if keras.backend.backend() != "torch":
    pytest.skip(f"keras was imported with the {keras.backend.backend()} backend, not torch", allow_module_level=True)
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402  (writes the layout Keras 2 published)

from cnnzoo import create_model, keras_weights, summary  # noqa: E402
from cnnzoo.errors import UserError  # noqa: E402
from cnnzoo.keras_weights import load_keras_weights  # noqa: E402
from cnnzoo.preprocessing import Preprocessing  # noqa: E402

APPS = keras.applications


def randomise(model, seed=0):
    """Random biases, batch-norm scales, shifts and statistics, so a wrong eps or a swapped statistic
    shows (Keras starts them at 0, 1, 0, 1). Kernels keep Keras' random initialisation."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        shape, name = tuple(v.shape), v.name
        if name == "moving_variance":
            v.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif name == "gamma":
            v.assign(rng.uniform(0.8, 1.2, shape).astype("float32"))
        elif name in ("beta", "moving_mean", "bias"):
            v.assign(rng.normal(0, 0.1, shape).astype("float32"))
    return model


def save_both(model, folder, stem, formats=("legacy", "keras3")):
    """The same weights as keras.applications publishes them (Keras 2's save_weights: layer groups at
    the root, 'layer_names' and 'weight_names' attributes) and as Keras 3's .weights.h5."""
    paths = []
    if "legacy" in formats:
        paths.append(folder / f"{stem}.h5")
        with h5py.File(paths[-1], "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
    if "keras3" in formats:
        paths.append(folder / f"{stem}.weights.h5")
        model.save_weights(paths[-1])
    return paths


def keras_output(model, x_nchw):
    y = model(np.ascontiguousarray(x_nchw.permute(0, 2, 3, 1).numpy()), training=False)
    return torch.from_numpy(np.asarray(keras.ops.convert_to_numpy(y)))


def check_same_outputs(keras_model, model_name, sizes, folder, formats=("legacy",)):
    """Keras' output and cnnzoo's from each file format agree at each input size. A Keras model
    without top (its input size then free) is compared with cnnzoo's feature map."""
    torch.manual_seed(0)
    randomise(keras_model)
    inputs = [torch.rand(1, 3, side, side) * 2 - 1 for side in sizes]
    expected = [keras_output(keras_model, x) for x in inputs]
    no_top = len(expected[0].shape) == 4
    for path in save_both(keras_model, folder, model_name, formats):
        model, _ = load_keras_weights(path, model_name)
        for x, want in zip(inputs, expected):
            with torch.no_grad():
                got = model.eval().forward_features(x).permute(0, 2, 3, 1) if no_top else model.eval()(x)
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4,
                                       msg=lambda m, name=path.name, side=x.shape[-1]: f"{name} at {side} px: {m}")
    return model


# MobileNet at two resolutions of Keras' published grid (every stride-2 conv there sees an even size).
# One Keras build per alpha: without top, Keras leaves the input size free; the head (conv_preds, a
# 1x1 conv read as our linear layer) is checked on the small model below. Both file formats at one alpha.
@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.25])
def test_mobilenet_v1_computes_what_keras_does(alpha, tmp_path):
    base = APPS.MobileNet(alpha=alpha, input_shape=(None, None, 3), include_top=False, weights=None)
    formats = ("legacy", "keras3") if alpha == 0.25 else ("legacy",)
    model = check_same_outputs(base, "mobilenet_v1", (224, 128), tmp_path, formats)
    assert model.layout == "keras"


# 40 px: the maps of 5 and 3 pixels make Keras' correct_pad pad (1, 1), the even ones (0, 1).
# 0.35 and 1.4: the alphas whose channel rounding differs most from alpha 1's
@pytest.mark.parametrize("alpha", [0.35, 1.4])
def test_mobilenet_v2_computes_what_keras_does(alpha, tmp_path):
    twin = APPS.MobileNetV2(alpha=alpha, input_shape=(40, 40, 3), weights=None, classes=10,
                            classifier_activation=None)
    check_same_outputs(twin, "mobilenet_v2", (40,), tmp_path)


@pytest.mark.slow
def test_vgg16_computes_what_keras_does(tmp_path):
    # 64 px: a 2x2 last map, so fc1's channels-last rows must be reordered to match
    twin = APPS.VGG16(input_shape=(64, 64, 3), weights=None, classes=10, classifier_activation=None)
    check_same_outputs(twin, "vgg16", (64,), tmp_path)


@pytest.mark.slow
def test_resnet50_computes_what_keras_does(tmp_path):
    twin = APPS.ResNet50(input_shape=(32, 32, 3), weights=None, classes=10, classifier_activation=None)
    check_same_outputs(twin, "resnet50", (32,), tmp_path)


@pytest.mark.slow
def test_densenet121_computes_what_keras_does(tmp_path):
    twin = APPS.DenseNet121(input_shape=(32, 32, 3), weights=None, classes=10, classifier_activation=None)
    check_same_outputs(twin, "densenet121", (32,), tmp_path)


# ----------------------------------------------------------------------------- a small MobileNet for the rest


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Keras' MobileNet alpha=0.25 at 32 px, 10 classes, randomised, in both formats, and without top."""
    folder = tmp_path_factory.mktemp("keras")
    twin = randomise(APPS.MobileNet(alpha=0.25, input_shape=(32, 32, 3), weights=None, classes=10,
                                    classifier_activation=None))
    legacy, keras3 = save_both(twin, folder, "mobilenet_025")
    base = APPS.MobileNet(alpha=0.25, input_shape=(32, 32, 3), weights=None, include_top=False)
    base.set_weights(twin.get_weights()[:len(base.weights)])
    no_top, = save_both(base, folder, "mobilenet_025_no_top", ("legacy",))
    return dict(twin=twin, base=base, legacy=legacy, keras3=keras3, no_top=no_top, folder=folder)


def test_the_head_computes_what_keras_does(small):
    model, _ = load_keras_weights(small["legacy"], "mobilenet_v1")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), keras_output(small["twin"], x), rtol=1e-4, atol=1e-4)


def test_preprocessing_and_model_arguments_travel_with_the_weights(small):
    model, prep, args = keras_weights.load_keras_weights_with_args(small["legacy"], "mobilenet_v1", image_size=32)
    assert prep == Preprocessing.keras("tf", 32)  # MobileNet's preprocess_input: [-1, 1]
    assert args == {"layout": "keras", "width_mult": 0.25, "num_classes": 10}
    rebuilt = create_model("mobilenet_v1", **args)  # what a checkpoint of it needs
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))


def test_a_file_without_top_gets_a_new_head(small):
    model, _ = load_keras_weights(small["no_top"], "mobilenet_v1", num_classes=7)
    assert model.num_classes == 7 and model.head.fc.out_features == 7
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        features = model.eval().forward_features(x)
    torch.testing.assert_close(features, keras_output(small["base"], x).permute(0, 3, 1, 2), rtol=1e-4, atol=1e-4)


def test_course_cifar10_mobilenet_has_kerass_parameter_count():
    # The course's CIFAR-10 MobileNet: alpha=0.5, 32x32x3, 10 classes. 834,666 in Keras' count (its
    # model.summary(): parameters plus batch norm's moving statistics).
    twin = APPS.MobileNet(alpha=0.5, input_shape=(32, 32, 3), weights=None, classes=10)
    ours = summary("mobilenet_v1", (3, 32, 32), keras=True, layout="keras", width_mult=0.5, num_classes=10)
    assert twin.count_params() == ours.total_params == 834_666


def test_summary_names_layers_as_keras_does(small):
    model, _ = load_keras_weights(small["legacy"], "mobilenet_v1")
    table = summary(model, (3, 32, 32), keras=True)
    ours = [row.name for row in table.rows]
    keras_names = [layer.name for layer in small["twin"].layers]
    named = [n for n in ours if n in keras_names]
    assert named == [n for n in keras_names if n in named]  # in Keras' order
    for name in ("conv1", "conv1_bn", "conv_pad_2", "conv_dw_2", "conv_pw_13_relu", "conv_preds"):
        assert name in ours
    rows = {row.name: row for row in table.rows}
    for name in ("conv1", "conv_dw_2", "conv_pw_13"):  # Keras' (None, H, W, C) and its parameter count
        layer = small["twin"].get_layer(name)
        assert rows[name].output_shape[1:] == list(layer.output.shape[1:]) and rows[name].params == layer.count_params()
    assert rows["conv_preds"].params == small["twin"].get_layer("conv_preds").count_params()


@pytest.mark.slow
def test_exported_onnx_of_a_keras_layout_model_is_verified(small, tmp_path):
    from cnnzoo.export import export_model
    model, _ = load_keras_weights(small["keras3"], "mobilenet_v1")
    report = export_model(model.eval(), "onnx", out=tmp_path / "keras.onnx", input_size=(3, 32, 32),
                          latency_batch=1, repeats=1, warmup=0)
    assert report.verification.passed and (tmp_path / "keras.onnx").is_file()


# ----------------------------------------------------------------------------- bad input


def test_a_file_for_another_model_is_refused(small):
    with pytest.raises(UserError, match=r"holds Keras' MobileNet alpha=0.25 \(mobilenet_v1 in cnnzoo\)"):
        load_keras_weights(small["legacy"], "mobilenet_v2")


def test_a_file_for_another_alpha_is_refused(small):
    with pytest.raises(UserError, match="alpha=0.25.*not width_mult=0.5"):
        load_keras_weights(small["keras3"], "mobilenet_v1", width_mult=0.5)


def test_a_file_for_another_class_count_is_refused(small):
    with pytest.raises(UserError, match="10-class top.*not 5 classes.*without top"):
        load_keras_weights(small["legacy"], "mobilenet_v1", num_classes=5)


@pytest.mark.parametrize("which", ["legacy", "keras3"])
def test_a_truncated_file_is_refused(small, which, tmp_path):
    data = small[which].read_bytes()
    cut = tmp_path / small[which].name
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match="cut short"):
        load_keras_weights(cut, "mobilenet_v1")


def test_not_a_keras_file_is_refused(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(UserError, match="not Keras weights"):
        load_keras_weights(tmp_path / "other.h5", "mobilenet_v1")


# ----------------------------------------------------------------------------- weights="keras"


def test_published_file_names_follow_kerass_source():
    row = keras_weights.published_keras_file("mobilenet_v1", width_mult=0.5, image_size=128, include_top=False)
    assert row.file_name == "mobilenet_5_0_128_tf_no_top.h5" and row.md5 is None
    row = keras_weights.published_keras_file("mobilenet_v2", width_mult=0.35, image_size=96)
    assert row.file_name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96.h5"
    row = keras_weights.published_keras_file("resnet50")
    assert row.address.endswith("/resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5")
    assert row.md5 == "2cb95161c43110f7111970584f804107"
    with pytest.raises(UserError, match="alpha in 0.25, 0.5, 0.75, 1.0 at 128, 160, 192, 224 px"):
        keras_weights.published_keras_file("mobilenet_v1", width_mult=0.3)


def test_keras_name_reads_kerass_cache(small, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    row = keras_weights.published_keras_file("mobilenet_v1", width_mult=0.25, image_size=128)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / row.file_name).write_bytes(small["legacy"].read_bytes())
    model, prep = load_keras_weights("keras", "mobilenet_v1", width_mult=0.25, image_size=128)
    assert model.num_classes == 10 and prep == Preprocessing.keras("tf", 128)  # the file's 10 classes


def test_keras_name_without_cache_or_hash_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(UserError, match=r"mobilenet_5_0_224_tf\.h5 is not in Keras' cache.*no hash") as err:
        load_keras_weights("keras", "mobilenet_v1", width_mult=0.5)
    assert str(tmp_path / "models" / "mobilenet_5_0_224_tf.h5") in str(err.value)


class _Server(http.server.BaseHTTPRequestHandler):
    body = b"not the published file"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _serve_row(monkeypatch, address, md5):
    row = dataclasses.replace(keras_weights.published_keras_file("resnet50"), address=address, md5=md5)
    monkeypatch.setattr(keras_weights, "KERAS_FILES", (row,))
    return row


def test_keras_name_offline_says_which_file_to_put_where(tmp_path, monkeypatch, loopback):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    closed = loopback.rsplit(":", 1)[0] + ":9"  # the discard port: nothing listens on loopback
    row = _serve_row(monkeypatch, f"{closed}/resnet50.h5", "0" * 32)
    with pytest.raises(UserError, match="cannot download.*Offline, put Keras' resnet50_weights") as err:
        load_keras_weights("keras", "resnet50", progress=False)
    assert str(tmp_path / "models" / row.file_name) in str(err.value)


def test_a_download_with_the_wrong_hash_is_not_kept(tmp_path, monkeypatch, loopback):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    row = _serve_row(monkeypatch, f"{loopback}/resnet50.h5", hashlib.md5(b"the real file").hexdigest())
    with pytest.raises(UserError, match="the download.*MD5"):
        load_keras_weights("keras", "resnet50", progress=False)
    assert not any((tmp_path / "models").iterdir())  # neither the file nor a partial one
    assert row.file_name
