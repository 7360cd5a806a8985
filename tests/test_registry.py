"""The registry: names, overrides, suggestions, and model specs as the CLI writes them."""
from functools import partial

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo import registry
from cnnzoo.factory import create_model
from cnnzoo.registry import ModelError, parse_model_spec, register_model


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: int = 4):
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(in_chans, width, 3)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


@pytest.fixture
def tiny_registered():
    register_model("tiny_test_net", partial(TinyNet, width=4), family="test", paper="none",
                   input_size=(3, 8, 8))
    yield "tiny_test_net"
    del registry._REGISTRY["tiny_test_net"]


def test_create_model_ignores_none_overrides(tiny_registered):
    model = create_model(tiny_registered, num_classes=None, width=None)
    assert model.num_classes == 10 and model.conv.out_channels == 4
    model = create_model(tiny_registered, num_classes=3, width=6)
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 3)


def test_unknown_argument_suggests_close_match(tiny_registered):
    with pytest.raises(ModelError, match=r"no argument 'num_class'.*'num_classes'"):
        create_model(tiny_registered, num_class=3)


def test_unknown_model_suggests_close_match(tiny_registered):
    with pytest.raises(ModelError, match=r"unknown model 'tiny_tset_net'.*'tiny_test_net'"):
        create_model("tiny_tset_net")


def test_duplicate_registration_raises(tiny_registered):
    with pytest.raises(ValueError, match="registered twice"):
        register_model(tiny_registered, TinyNet, family="test", paper="none")


def test_builders_with_bare_kwargs_are_rejected():
    def builder(**kwargs):
        return TinyNet(**kwargs)

    with pytest.raises(TypeError, match="explicit signature"):
        register_model("kwargs_net", builder, family="test", paper="none")
    assert "kwargs_net" not in registry._REGISTRY


def test_list_models_pattern_and_metadata(tiny_registered):
    assert tiny_registered in cnnzoo.list_models()
    assert cnnzoo.list_models("tiny_*") == [tiny_registered]
    info = cnnzoo.get_model_info(tiny_registered)
    assert (info.family, info.input_size) == ("test", (3, 8, 8))
    assert info.defaults["width"] == 4


@pytest.mark.parametrize("spec, expected", [
    ("resnet18", ("resnet18", {})),
    ("resnet18:norm=group", ("resnet18", {"norm": "group"})),
    ("mobilenet_v1:width_mult=0.5,drop_rate=0,conv_bias=true",
     ("mobilenet_v1", {"width_mult": 0.5, "drop_rate": 0, "conv_bias": True})),
])
def test_parse_model_spec(spec, expected):
    assert parse_model_spec(spec) == expected


def test_parse_model_spec_rejects_items_without_value():
    with pytest.raises(ModelError, match="key=value"):
        parse_model_spec("resnet18:group")
