"""Loading weights: torchvision's (mapped onto our names, outputs equal), ours, and bad files."""
import argparse

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.errors import UserError
from cnnzoo.registry import ModelError, get_model_info

torchvision = pytest.importorskip("torchvision", reason="torchvision is needed to check parity with it "
                                                        "(pip install -e .[dev])")

TOLERANCE = 1e-5  # max abs difference of eval-mode logits


def randomise_norm_stats(model: nn.Module) -> nn.Module:
    # Fresh BN layers are nearly the identity; random statistics make a wrong mapping (or a wrong eps) show.
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
    return model


def reference(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return randomise_norm_stats(getattr(torchvision.models, name)(**kwargs)).eval()


def max_diff(ours: nn.Module, theirs: nn.Module, size: int = 64) -> float:
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        return (ours.eval()(x) - theirs(x)).abs().max().item()


@pytest.mark.parametrize("name, kwargs", [
    ("resnet18", {}),
    ("resnet50", {}),
    ("mobilenet_v2", {}),
    ("densenet121", {}),
    ("googlenet", {"aux_logits": True, "init_weights": True}),  # its file then carries the aux heads
    ("mobilenet_v3_small", {}),
    ("efficientnet_b0", {}),
    ("shufflenet_v2_x0_5", {}),
    ("squeezenet1_1", {}),
])
def test_torchvision_file_gives_the_same_outputs(tmp_path, name, kwargs):
    theirs = reference(name, **kwargs)
    path = tmp_path / f"{name}.pth"
    torch.save(theirs.state_dict(), path)
    ours = cnnzoo.create_model(name, weights=str(path))
    assert max_diff(ours, theirs) <= TOLERANCE


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_vgg_converter_gives_the_same_outputs(name):
    # VGG files are ~0.5 GB, so this one checks the mapping in memory; the file path is the same code.
    theirs = reference(name)
    state, implied = get_model_info(name).convert_reference_weights(theirs.state_dict())
    ours = cnnzoo.create_model(name, **implied)
    ours.load_state_dict(state, strict=True)
    assert max_diff(ours, theirs, size=32) <= TOLERANCE


def test_googlenet_file_selects_torchvision_layout(tmp_path):
    theirs = reference("googlenet", aux_logits=True, init_weights=True)
    path = tmp_path / "googlenet.pth"
    torch.save(theirs.state_dict(), path)
    ours = cnnzoo.create_model("googlenet", weights=str(path), aux_logits=True)
    assert ours.blocks.inception3a.branch3.conv.conv.kernel_size == (3, 3)
    assert ours.stem.conv1.norm.eps == 1e-3
    assert torch.equal(ours.aux2.fc.weight, theirs.aux2.fc2.weight)
    with pytest.raises(ModelError, match="large_branch_kernel=3"):
        cnnzoo.create_model("googlenet", weights=str(path), large_branch_kernel=5)
    # fine-tuning with aux heads for another number of classes: every aux classifier starts afresh
    with pytest.warns(UserWarning) as record:
        tuned = cnnzoo.create_model("googlenet", weights=str(path), aux_logits=True, num_classes=5)
    messages = " | ".join(str(r.message) for r in record)
    assert "re-initialised with 5 classes" in messages and "aux1.fc, aux2.fc" in messages
    assert tuned.aux1.fc.out_features == 5
    assert torch.equal(tuned.aux1.fc1.weight, theirs.aux1.fc1.weight)


@pytest.fixture
def resnet18_file(tmp_path):
    theirs = reference("resnet18", num_classes=10)
    path = tmp_path / "resnet18_10.pth"
    torch.save(theirs.state_dict(), path)
    return theirs, str(path)


def test_num_classes_is_taken_from_the_file(resnet18_file):
    theirs, path = resnet18_file
    ours = cnnzoo.create_model("resnet18", weights=path)
    assert ours.num_classes == 10 and max_diff(ours, theirs) <= TOLERANCE


def test_other_num_classes_reinitialises_the_head_and_says_so(resnet18_file):
    theirs, path = resnet18_file
    with pytest.warns(UserWarning, match="head was re-initialised with 3 classes"):
        ours = cnnzoo.create_model("resnet18", weights=path, num_classes=3)
    assert ours.get_classifier().out_features == 3
    assert torch.equal(ours.stages[3][1].conv2.conv.weight, theirs.layer4[1].conv2.weight)
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        theirs.fc = nn.Identity()
        pooled = ours.eval().forward_head(ours.forward_features(x), pre_logits=True)
        assert (pooled - theirs(x)).abs().max() <= TOLERANCE


def test_plain_state_dict_of_ours_round_trips(tmp_path):
    model = cnnzoo.create_model("mobilenet_v1", width_mult=0.25, num_classes=4)
    randomise_norm_stats(model)
    path = tmp_path / "ours.pth"
    torch.save(model.state_dict(), path)
    loaded = cnnzoo.create_model("mobilenet_v1", width_mult=0.25, weights=str(path))
    assert loaded.num_classes == 4
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model.eval()(x))
    with pytest.raises(ModelError, match="same width_mult"):  # built at another width: say what to do
        cnnzoo.create_model("mobilenet_v1", weights=str(path))


def test_training_checkpoint_rebuilds_from_its_arguments(tmp_path):
    args = {"width_mult": 0.25, "num_classes": 3, "norm": "group"}
    model = cnnzoo.create_model("resnet18", **args)
    path = tmp_path / "ckpt.pt"
    torch.save({"format": "cnnzoo-checkpoint", "version": 1, "model_name": "resnet18", "model_args": args,
                "model_state": model.state_dict(), "class_names": ["a", "b", "c"]}, path)
    loaded = cnnzoo.create_model("resnet18", weights=str(path))
    assert loaded.num_classes == 3 and isinstance(loaded.stem.norm, nn.GroupNorm)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model.eval()(x))
    with pytest.raises(ModelError, match="checkpoint of 'resnet18', not of 'resnet34'"):
        cnnzoo.create_model("resnet34", weights=str(path))


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        cnnzoo.create_model("resnet18", weights=str(tmp_path / "nope.pth"))


def test_file_that_is_not_a_state_dict(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(ModelError, match="cannot read weights file"):
        cnnzoo.create_model("resnet18", weights=str(text))
    a_list = tmp_path / "list.pt"
    torch.save([1, 2, 3], a_list)
    with pytest.raises(ModelError, match="does not hold a state dict"):
        cnnzoo.create_model("resnet18", weights=str(a_list))


def test_arbitrary_objects_are_refused(tmp_path):
    # weights_only=True: unpickling anything but tensors and plain containers is refused
    path = tmp_path / "object.pt"
    torch.save({"args": argparse.Namespace(a=1)}, path)
    with pytest.raises(ModelError, match="cannot read weights file"):
        cnnzoo.create_model("resnet18", weights=str(path))


def test_weights_of_another_architecture(resnet18_file):
    _, path = resnet18_file
    with pytest.raises(ModelError, match="neither a state dict of our 'mobilenet_v2' nor of torchvision's"):
        cnnzoo.create_model("mobilenet_v2", weights=path)
    with pytest.raises(ModelError, match="does not fit resnet50"):
        cnnzoo.create_model("resnet50", weights=path)
    with pytest.raises(ModelError):
        cnnzoo.create_model("mobilenet_v1", weights=path)  # no reference mapping at all
