"""Published weights: the table, the hub cache, downloads (from a server on loopback), hash checks,
the offline message, adapting the head and the input channels, and files that carry code.

No test touches the network: the table entry is pointed at a small file each test writes (torchvision's
own mobilenet_v2 at width 0.25, ten classes: 1 MB), served by ``http.server`` on 127.0.0.1 when a
download is what is tested.
"""
import dataclasses
import hashlib
import http.server
import json
import pathlib
import socket
import threading

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo import pretrained
from cnnzoo.cli import main
from cnnzoo.errors import UserError
from cnnzoo.factory import create_model_with_args
from cnnzoo.pretrained_lite import LITE_WEIGHTS
from cnnzoo.profiling import profile as profile_module
from cnnzoo.registry import ModelError, get_model_info
from cnnzoo.weights import adapt_input_conv
from cnnzoo.weights_lightweight import REFERENCE_CONVERTERS

torchvision = pytest.importorskip("torchvision", reason="the reference weights' layout is torchvision's")

TOLERANCE = 1e-5


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub folder (what TORCH_HOME/hub is): torch.hub.get_dir() answers it."""
    folder = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(folder))
    return folder


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


@pytest.fixture
def tv_file(tmp_path, monkeypatch):
    """torchvision's mobilenet_v2 (width 0.25, 10 classes) saved under a torchvision-style name, and
    the table entry pointed at it: (reference model, file bytes, patched row). Its address is a
    closed port, so a test that did not mean to download fails loudly."""
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v2(width_mult=0.25, num_classes=10).eval()
    with torch.no_grad():  # fresh BN layers are nearly the identity: random statistics make mistakes show
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    staging = tmp_path / "staging.pth"
    torch.save(reference.state_dict(), staging)
    data = staging.read_bytes()
    prefix = hashlib.sha256(data).hexdigest()[:8]
    name = f"mobilenet_v2-{prefix}.pth"
    row = dataclasses.replace(pretrained.TORCHVISION_WEIGHTS["mobilenet_v2"], file_name=name, hash_prefix=prefix,
                              url=f"http://127.0.0.1:{closed_port()}/{name}")
    monkeypatch.setitem(pretrained.TORCHVISION_WEIGHTS, "mobilenet_v2", row)
    return reference, data, row


def same_outputs(ours: nn.Module, theirs: nn.Module) -> bool:
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        return (ours.eval()(x) - theirs.eval()(x)).abs().max().item() <= TOLERANCE


class Server:
    """``http.server`` serving one folder on 127.0.0.1, counting requests."""

    def __init__(self, folder: pathlib.Path):
        counter = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):
                counter.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def served(row, server: Server):
    return dataclasses.replace(row, url=f"http://127.0.0.1:{server.port}/{row.file_name}")


# ------------------------------------------------------------------------------------- the table

def test_table_matches_torchvisions_weight_enums():
    from torchvision.models import get_model_weights

    with_reference = [n for n in cnnzoo.list_models()
                      if get_model_info(n).convert_reference_weights or n in REFERENCE_CONVERTERS]
    assert sorted(pretrained.TORCHVISION_WEIGHTS) == sorted(with_reference)
    for name, row in pretrained.TORCHVISION_WEIGHTS.items():
        published = get_model_weights(name).DEFAULT
        transform = published.transforms()
        assert row.address == published.url and published.url.endswith("/" + row.file_name)
        assert f"-{row.hash_prefix}." in row.file_name and len(row.hash_prefix) >= 8
        assert (row.image_size, row.resize_size) == (transform.crop_size[0], transform.resize_size[0])
        assert row.size_mb == published.meta["_file_size"]
        assert row.imagenet_top1 == published.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        if name == "googlenet":  # torchvision's model re-normalises its input to mean = std = 0.5 itself
            assert row.mean == row.std == (0.5, 0.5, 0.5)
        else:
            assert list(row.mean) == transform.mean and list(row.std) == transform.std


def test_names_and_which_models_have_weights():
    assert pretrained.is_weight_name("torchvision") and pretrained.is_weight_name("ImageNet")
    assert not pretrained.is_weight_name("./imagenet") and not pretrained.is_weight_name("weights.pth")
    assert pretrained.has_published_weights("resnet18") and not pretrained.has_published_weights("mobilenet_v1")
    with pytest.raises(ModelError, match="torchvision publishes no weights for 'mobilenet_v1'.*resnet18"):
        cnnzoo.create_model("mobilenet_v1", weights="torchvision")
    with pytest.raises(ModelError, match="unknown model"):
        pretrained.published_weights("resnet19")


def test_preprocessing_travels_with_the_weights(tmp_path):
    prep = pretrained.weights_preprocessing("imagenet", "resnet50")
    assert {"image_size": prep.image_size, "mean": list(prep.mean), "std": list(prep.std)} == \
        {"image_size": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert list(pretrained.weights_preprocessing("torchvision", "googlenet").mean) == [0.5, 0.5, 0.5]
    assert pretrained.weights_preprocessing(None, "resnet18") is None
    assert pretrained.weights_preprocessing(str(tmp_path / "resnet18-f37072fd.pth"), "resnet18") == \
        pretrained.weights_preprocessing("torchvision", "resnet18")  # a local copy of torchvision's file
    model = cnnzoo.create_model("resnet18", width_mult=0.25, num_classes=2)
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    assert pretrained.weights_preprocessing(str(plain), "resnet18") is None
    own = {"image_size": 32, "mean": [0.1, 0.2, 0.3], "std": [0.3, 0.2, 0.1], "resize": "stretch"}
    ckpt = tmp_path / "best.pt"
    torch.save({"format": "cnnzoo-checkpoint", "version": 1, "model_name": "resnet18",
                "model_args": {"width_mult": 0.25, "num_classes": 2}, "model_state": model.state_dict(),
                "preprocessing": own}, ckpt)
    assert pretrained.weights_preprocessing(str(ckpt), "resnet18").to_dict() == {**own, "channel_order": "rgb"}


# --------------------------------------------------------------------------- cache and download

def test_the_hub_cache_is_used_without_downloading(hub_dir, tv_file):
    reference, data, row = tv_file
    cached = hub_dir / "checkpoints" / row.file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)
    assert pretrained.resolve_weights_file("torchvision", "mobilenet_v2") == cached
    model, args = create_model_with_args("mobilenet_v2", weights="torchvision", width_mult=0.25)
    assert args == {"width_mult": 0.25, "num_classes": 10} and same_outputs(model, reference)


def test_a_cached_file_with_the_wrong_hash_is_refused_and_left(hub_dir, tv_file):
    _, data, row = tv_file
    cached = hub_dir / "checkpoints" / row.file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit off
    with pytest.raises(UserError, match=f"is not torchvision's {row.file_name}.*Delete it"):
        cnnzoo.create_model("mobilenet_v2", weights="torchvision", width_mult=0.25)
    assert cached.exists()


def test_download_once_into_the_hub_cache(hub_dir, tv_file, tmp_path, monkeypatch, capsys):
    reference, data, row = tv_file
    site = tmp_path / "site"
    site.mkdir()
    (site / row.file_name).write_bytes(data)
    with Server(site) as server:
        monkeypatch.setitem(pretrained.TORCHVISION_WEIGHTS, "mobilenet_v2", served(row, server))
        first = cnnzoo.create_model("mobilenet_v2", weights="imagenet", width_mult=0.25)
        second = cnnzoo.create_model("mobilenet_v2", weights="torchvision", width_mult=0.25)
    assert len(server.requests) == 1  # the second model came from the cache
    assert (hub_dir / "checkpoints" / row.file_name).read_bytes() == data
    assert same_outputs(first, reference) and same_outputs(second, reference)
    assert f"to {hub_dir / 'checkpoints' / row.file_name}" in capsys.readouterr().err


def test_a_download_with_the_wrong_hash_is_refused_and_not_kept(hub_dir, tv_file, tmp_path, monkeypatch):
    _, data, row = tv_file
    site = tmp_path / "site"
    site.mkdir()
    (site / row.file_name).write_bytes(data + b"tampered")
    with Server(site) as server:
        monkeypatch.setitem(pretrained.TORCHVISION_WEIGHTS, "mobilenet_v2", served(row, server))
        with pytest.raises(UserError, match=f"does not match the published SHA-256 prefix {row.hash_prefix}"):
            cnnzoo.create_model("mobilenet_v2", weights="torchvision", width_mult=0.25, progress=False)
    folder = hub_dir / "checkpoints"
    assert not folder.exists() or list(folder.iterdir()) == []  # neither the file nor a partial one


def test_offline_says_where_to_put_the_file(hub_dir, tv_file):
    _, _, row = tv_file
    with pytest.raises(UserError) as err:
        cnnzoo.create_model("mobilenet_v2", weights="torchvision", width_mult=0.25, progress=False)
    message = str(err.value)
    assert row.address in message and str(hub_dir / "checkpoints" / row.file_name) in message
    assert "without internet" in message


def test_a_local_copy_still_works(tv_file, tmp_path):
    reference, data, row = tv_file
    path = tmp_path / row.file_name
    path.write_bytes(data)
    assert same_outputs(cnnzoo.create_model("mobilenet_v2", weights=path, width_mult=0.25), reference)


# ------------------------------------------------------------------------------------- adapting

def test_another_class_count_replaces_the_head_in_one_line(hub_dir, tv_file):
    reference, data, row = tv_file
    (hub_dir / "checkpoints").mkdir(parents=True)
    (hub_dir / "checkpoints" / row.file_name).write_bytes(data)
    with pytest.warns(UserWarning) as record:
        model, args = create_model_with_args("mobilenet_v2", weights="torchvision", width_mult=0.25, num_classes=3)
    assert [str(r.message).count("\n") for r in record] == [0]
    assert "classifier has 10 classes; the head was re-initialised with 3 classes" in str(record[0].message)
    assert args["num_classes"] == 3 and model.get_classifier().out_features == 3
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        reference.classifier = nn.Identity()
        pooled = model.eval().forward_head(model.forward_features(x), pre_logits=True)
        assert (pooled - reference(x)).abs().max() <= TOLERANCE


FAMILIES = ["resnet18", "vgg11_bn", "googlenet", "mobilenet_v1", "mobilenet_v2", "densenet121"]


def randomise_norm_stats(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def rgb_model_file(tmp_path, name: str) -> tuple[nn.Module, pathlib.Path]:
    torch.manual_seed(0)
    rgb = randomise_norm_stats(cnnzoo.create_model(name, width_mult=0.25, num_classes=4)).eval()
    path = tmp_path / f"{name}.pt"
    torch.save(rgb.state_dict(), path)
    return rgb, path


@pytest.mark.parametrize("name", FAMILIES)
def test_one_channel_model_sees_grey_as_the_rgb_model_sees_it_replicated(tmp_path, name):
    rgb, path = rgb_model_file(tmp_path, name)
    with pytest.warns(UserWarning, match="takes 3 input channels; adapted to 1 by summing its kernels"):
        grey = cnnzoo.create_model(name, weights=path, in_chans=1, width_mult=0.25).eval()
    image = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        expected = rgb(image.expand(-1, 3, -1, -1))
        # the same sums in another order: float rounding, which DenseNet's depth amplifies to ~5e-5
        # of the logits' scale (random weights and statistics make them large)
        assert (grey(image) - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_more_channels_repeat_the_rgb_kernels(tmp_path):
    rgb, path = rgb_model_file(tmp_path, "resnet18")
    with pytest.warns(UserWarning, match="adapted to 6 by repeating its kernels cyclically"):
        six = cnnzoo.create_model("resnet18", weights=path, in_chans=6, width_mult=0.25).eval()
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad():  # RGB RGB through the 6-channel model = RGB through the RGB model
        expected = rgb(image)
        assert (six(image.repeat(1, 2, 1, 1)) - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_adapt_input_conv_rules():
    w = torch.randn(8, 3, 3, 3)
    assert torch.allclose(adapt_input_conv(w, 1), w.sum(1, keepdim=True))
    two = adapt_input_conv(w, 2)
    assert torch.allclose(two, w[:, :2] * 1.5)
    four = adapt_input_conv(w, 4)
    assert torch.allclose(four, torch.cat([w, w[:, :1]], 1) * 0.75)
    assert adapt_input_conv(w, 3) is w


# ------------------------------------------------------------------------------------- safety

class _Payload:
    """Pickles as a call to Path.touch: loading the file the unsafe way would create ``marker``."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_file_carrying_code_is_refused_and_its_code_never_runs(tmp_path, hub_dir, tv_file, capsys):
    marker = tmp_path / "code-ran"
    state = cnnzoo.create_model("resnet18", width_mult=0.25, num_classes=2).state_dict()
    evil = tmp_path / "evil.pt"
    torch.save({**state, "extra": _Payload(marker)}, evil)
    with pytest.raises(ModelError, match="cannot read weights file .*its code never runs"):
        cnnzoo.create_model("resnet18", weights=evil, width_mult=0.25)
    assert main(["summary", "resnet18", "--weights", str(evil), "--width-mult", "0.25"]) == 2
    assert "cannot read weights file" in capsys.readouterr().err
    # the same file under the published name, with a matching hash prefix, in the hub cache
    _, _, row = tv_file
    data = evil.read_bytes()
    prefix = hashlib.sha256(data).hexdigest()[:8]
    disguised = dataclasses.replace(row, file_name=f"mobilenet_v2-{prefix}.pth", hash_prefix=prefix)
    pretrained.TORCHVISION_WEIGHTS["mobilenet_v2"] = disguised  # restored by tv_file's monkeypatch
    (hub_dir / "checkpoints").mkdir(parents=True)
    (hub_dir / "checkpoints" / disguised.file_name).write_bytes(data)
    with pytest.raises(ModelError, match="cannot read weights file"):
        cnnzoo.create_model("mobilenet_v2", weights="torchvision", width_mult=0.25)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ CLI

def test_lite_and_keras_weights_bring_their_preprocessing(capsys):
    # EfficientNet-Lite's reference: (pixel - 127) / 128 (tensorflow/tpu efficientnet_lite_builder.py)
    lite = pretrained.weights_preprocessing("ImageNet", "efficientnet_lite0")
    assert lite == LITE_WEIGHTS["efficientnet_lite0"].preprocessing()
    assert lite.mean[0] * 255 == pytest.approx(127) and lite.std[0] * 255 == pytest.approx(128)
    # Keras' preprocess_input modes (keras/src/applications/imagenet_utils.py): caffe is BGR, tf [-1, 1]
    assert pretrained.weights_preprocessing("Keras", "vgg16").channel_order == "bgr"
    assert pretrained.weights_preprocessing("x/mobilenet_1_0_224_tf.h5", "mobilenet_v1").mean == (0.5,) * 3
    assert pretrained.is_keras_weights("KERAS") and pretrained.is_keras_weights("a.weights.h5")
    assert not pretrained.is_keras_weights("a.pth")
    with pytest.raises(UserError, match="Keras publishes no"):
        pretrained.weights_preprocessing("keras", "squeezenet1_1")
    assert main(["list", "efficientnet_lite*", "--json"]) == 0
    rows = {r["name"]: r["published_weights"] for r in json.loads(capsys.readouterr().out)}
    assert rows["efficientnet_lite0"] == "imagenet (lite-weights)" and rows["efficientnet_lite3"] is None


def test_list_and_summary_show_published_weights(capsys):
    assert main(["list", "mobilenet*"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: " ".join(line.split()[3:5]).split(" Howard")[0].split(" Sandler")[0]
            for line in out.splitlines() if line.startswith("mobilenet")}
    assert rows == {"mobilenet_v1": "keras", "mobilenet_v2": "torchvision, keras",
                    "mobilenet_v3_large": "torchvision", "mobilenet_v3_small": "torchvision"}
    assert "keras: keras.applications' ImageNet file" in out
    assert main(["list", "resnet18", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["published_weights"] == "torchvision"
    assert main(["summary", "resnet18", "--depth", "1"]) == 0
    assert "Published weights: torchvision ImageNet-1k, resnet18-f37072fd.pth" in capsys.readouterr().out
    assert main(["summary", "mobilenet_v1", "--depth", "1"]) == 0
    assert "Published weights: keras.applications' ImageNet file; use --weights keras" in capsys.readouterr().out
    assert main(["summary", "efficientnet_lite0", "--depth", "1"]) == 0
    assert "lite-weights packages; use --weights imagenet" in capsys.readouterr().out
    assert main(["summary", "efficientnet_lite3", "--depth", "1"]) == 0
    assert "Published weights: none" in capsys.readouterr().out


def test_summary_and_profile_build_the_model_from_the_weights(tv_file, tmp_path, capsys, monkeypatch):
    _, data, row = tv_file
    path = tmp_path / row.file_name
    path.write_bytes(data)
    assert main(["summary", "mobilenet_v2", "--weights", str(path), "--width-mult", "0.25",
                 "--input-size", "32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model_name"] == "mobilenet_v2" and result["weights"] == str(path)
    assert result["rows"][-1]["output_shape"] == [1, 10]  # the file's ten classes
    assert result["published_weights"]["file_name"] == row.file_name
    monkeypatch.setattr(profile_module, "PEAK_MATMUL_SIZE", 128)
    assert main(["profile", "mobilenet_v2", "--weights", str(path), "--width-mult", "0.25", "--input-size", "32",
                 "--repeat", "1", "--warmup", "0", "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    reference = cnnzoo.create_model("mobilenet_v2", width_mult=0.25, num_classes=10)
    assert report["results"][0]["params"] == sum(p.numel() for p in reference.parameters())
