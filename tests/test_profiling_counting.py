"""The counting engine on plain torch.nn modules, torchvision's reference models and our blocks.

Golden numbers carry their source beside them. Models are built on the ``meta`` device: counting
needs shapes only, so even VGG16 costs milliseconds.
"""
import math

import pytest
import torch
import torchvision
from torch import nn

import cnnzoo
from cnnzoo.errors import UserError
from cnnzoo.layers import ConvNormAct, DepthwiseSeparableConv, InceptionBlock, InceptionNaive
from cnnzoo.profiling import count_macs, summary


def meta(builder, **kwargs):
    with torch.device("meta"):
        return builder(**kwargs)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- Keras-convention totals

def test_two_layer_mlp_matches_the_notes():
    # Study notes (two Dense layers 784->64->64 in Keras): Total params 54,400.
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
    for keras in (False, True):  # no normalisation: both conventions agree
        s = summary(mlp, (1, 28, 28), keras=keras)
        assert (s.total_params, s.trainable_params, s.non_trainable_params) == (54_400, 54_400, 0)
    assert s.macs == 784 * 64 + 64 * 64


@pytest.mark.parametrize("num_classes,total", [
    (1000, 138_357_544),  # study notes' Keras VGG16 summary, "Total params: 138,357,544"
    (5, 134_281_029),     # same network with a 5-class head (the notes' flowers example)
])
def test_torchvision_vgg16_keras_totals(num_classes, total):
    s = summary(meta(torchvision.models.vgg16, num_classes=num_classes), keras=True)
    assert (s.total_params, s.trainable_params, s.non_trainable_params) == (total, total, 0)


def test_torchvision_densenet121_keras_totals():
    # keras.applications.DenseNet121().summary(): Total params: 8,062,504 (Trainable 7,978,856,
    # non-trainable 83,648 = batch-norm moving mean and variance). PyTorch counts only the 7,978,856.
    model = meta(torchvision.models.densenet121)
    keras, torch_conv = summary(model, keras=True), summary(model)
    assert (keras.total_params, keras.trainable_params, keras.non_trainable_params) == (8_062_504, 7_978_856, 83_648)
    assert (torch_conv.total_params, torch_conv.non_trainable_params) == (7_978_856, 0)


def test_torchvision_mobilenet_v2_half_width_keras_totals():
    # keras.applications.MobileNetV2(alpha=0.5, classes=5, weights=None): Total params: 712,629.
    s = summary(meta(torchvision.models.mobilenet_v2, width_mult=0.5, num_classes=5), keras=True)
    assert s.total_params == 712_629


def test_frozen_parameters_are_non_trainable():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    model[0].requires_grad_(False)
    s = summary(model, (3, 8, 8))
    assert (s.trainable_params, s.non_trainable_params) == (16, 8 * 3 * 9 + 8)
    s = summary(model, (3, 8, 8), keras=True)  # + running mean and variance, never num_batches_tracked
    assert (s.trainable_params, s.non_trainable_params) == (16, 8 * 3 * 9 + 8 + 16)


# ----------------------------------------------------------------------------- the notes' worked arithmetic

def plain_conv(cin, cout, k):
    return ConvNormAct(cin, cout, k, norm="none", bias=False)


def test_large_kernel_against_stacked_3x3():
    # Study notes, VGG section: a 7x7 conv 16->32 has 7*7*16*32 = 25,088 weights.
    assert n_params(plain_conv(16, 32, 7)) == 25_088
    # The notes then print 3*3*16*32*3 = 13,824 for three stacked 3x3 convs 16->32->32->32, but
    # only the first of those sees 16 channels: the stack really has 3*3*16*32 + 2 * 3*3*32*32
    # = 23,040 weights (13,824 would need every conv to be 16->32, which cannot be stacked).
    stack = nn.Sequential(plain_conv(16, 32, 3), plain_conv(32, 32, 3), plain_conv(32, 32, 3))
    assert n_params(stack) == 23_040
    assert 3 * n_params(plain_conv(16, 32, 3)) == 13_824  # where the notes' figure comes from


def test_inception_arithmetic():
    # Study notes, GoogLeNet section (bias excluded).
    assert n_params(plain_conv(192, 96, 5)) == 460_800  # 5*5*192*96
    naive = InceptionNaive(192, 24, 24, 24, norm="none", bias=False)
    assert n_params(naive) == 161_280  # 1x1 + 3x3 + 5x5 branches, 24 channels each
    reduced = InceptionBlock(192, 24, 16, 24, 16, 24, 24, norm="none", bias=False)
    assert n_params(reduced) == 28_416  # 1x1 reductions to 16, pooling then 1x1 to 24
    assert summary(reduced, (192, 28, 28)).total_params == 28_416


def test_depthwise_separable_arithmetic():
    # Study notes, MobileNet section: a 3x3 conv 3->10 has 270 weights; depthwise-separable 27 + 30.
    assert n_params(plain_conv(3, 10, 3)) == 270
    sep = DepthwiseSeparableConv(3, 10, norm="none", bias=False)
    assert (n_params(sep.depthwise), n_params(sep.pointwise), n_params(sep)) == (27, 30, 57)


@pytest.mark.parametrize("cin,cout,k", [(32, 64, 3), (16, 128, 3), (64, 64, 5)])
def test_separable_to_standard_mac_ratio(cin, cout, k):
    # MobileNet paper (Howard et al. 2017), eq. 5: separable / standard = 1/C_out + 1/K^2, exactly
    # with 'same' padding and stride 1.
    x = (cin, 14, 14)
    standard = summary(plain_conv(cin, cout, k), x).macs
    separable = summary(DepthwiseSeparableConv(cin, cout, kernel_size=k, norm="none"), x).macs
    assert separable / standard == pytest.approx(1 / cout + 1 / k ** 2, rel=1e-12)


# ----------------------------------------------------------------------------- MACs

@pytest.mark.parametrize("builder,kwargs,gmacs", [
    # torchvision's model docs / weights meta "_ops" (its "GFLOPS" column counts multiply-adds).
    (torchvision.models.resnet50, {}, 4.089),
    (torchvision.models.vgg16, {}, 15.47),
    (torchvision.models.mobilenet_v2, {}, 0.301),
    (torchvision.models.googlenet, {"init_weights": False, "aux_logits": False}, 1.498),
    (torchvision.models.densenet121, {}, 2.834),
])
def test_torchvision_reference_macs(builder, kwargs, gmacs):
    assert summary(meta(builder, **kwargs)).macs / 1e9 == pytest.approx(gmacs, rel=0.03)


def test_grouped_conv_macs_are_exact():
    conv = nn.Conv2d(32, 64, 3, padding=1, groups=4)
    # out elements x (C_in / groups) x K x K: each output is a dot product over 8 channels x 9 taps
    assert summary(conv, (32, 10, 10)).macs == (64 * 10 * 10) * (32 // 4) * 9
    strided = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)  # depthwise, 10x10 -> 5x5
    assert summary(strided, (16, 10, 10)).macs == 16 * 5 * 5 * 9
    transposed = nn.ConvTranspose2d(8, 4, 2, stride=2)  # each input element scatters over 4 x 2 x 2
    assert summary(transposed, (8, 5, 5)).macs == 8 * 5 * 5 * 4 * 2 * 2


def test_depthwise_backward_costs_twice_forward():
    # Backward = grad-input (g*w per forward product) + grad-weight (g*x per forward product), so
    # exactly 2x forward. PyTorch 2.x's FlopCounterMode charges (groups + 1)x instead -- 65x for
    # this 64-channel depthwise conv (measured with torch 2.14: 117,411,840 backward MACs).
    conv = nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False)
    x = torch.randn(1, 64, 56, 56, requires_grad=True)
    counted = count_macs(conv, x, backward=True)
    assert counted.forward == 64 * 56 * 56 * 9
    assert counted.backward == 2 * counted.forward
    assert counted.training_step == 3 * counted.forward
    assert conv.weight.grad is None  # counting never writes gradients into the model


def test_backward_skips_grad_of_an_input_that_needs_none():
    # In a training step the images need no gradient: the first layer pays only grad-weight.
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    counted = count_macs(model, torch.randn(2, 3, 8, 8), backward=True)
    conv, linear = 2 * 8 * 8 * 8 * 3 * 9, 2 * 512 * 10
    assert counted.forward == conv + linear
    assert counted.backward == conv + 2 * linear
    assert any("threshold_backward" in name for name in counted.uncounted_backward)


def test_uncounted_ops_are_listed():
    s = summary(meta(torchvision.models.resnet18))
    names = " ".join(s.uncounted_ops)
    for expected in ("batch_norm", "relu", "add", "max_pool2d", "mean"):
        assert expected in names
    assert "Not counted" in str(s) and "batch_norm" in str(s)


# ----------------------------------------------------------------------------- rows, depth, connections

def test_rows_add_up_at_every_depth():
    model = meta(torchvision.models.resnet18)
    full = summary(model)
    for depth in (1, 2, 3, None):
        s = summary(model, depth=depth)
        assert sum(r.macs for r in s.rows) == full.macs
        assert sum(r.params for r in s.rows) == full.total_params
    assert [r.name for r in summary(model, depth=1).rows][:3] == ["input", "conv1", "bn1"]
    assert "layer1.0" in [r.name for r in summary(model, depth=2).rows]


def test_residual_addition_shows_its_two_sources():
    s = summary(meta(torchvision.models.resnet18))
    add = next(r for r in s.rows if r.name == "layer1.0.add")
    assert add.type == "Add" and sorted(add.connected_to) == ["layer1.0.bn2", "maxpool"]
    downsample_add = next(r for r in s.rows if r.name == "layer2.0.add")
    assert sorted(downsample_add.connected_to) == ["layer2.0.bn2", "layer2.0.downsample.1"]
    assert all(not r.connected_to for r in s.rows if r.type == "Conv2d")  # single-input layers


def test_concatenation_shows_its_branches_at_the_shown_depth():
    block = InceptionBlock(32, 8, 8, 16, 4, 8, 8)
    s = summary(block, (32, 12, 12), depth=1)
    cat = s.rows[-1]
    assert cat.type == "Concatenate" and cat.output_shape == [1, 40, 12, 12]
    assert cat.connected_to == ["branch1", "branch2", "branch3", "branch4"]
    table = str(s)
    assert "Connected to" in table and "branch4" in table


def test_table_says_its_units_and_flops_are_twice_macs():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    macs, flops = summary(model, (3, 6, 6)), summary(model, (3, 6, 6), units="flops")
    assert flops.flops == 2 * flops.macs == 2 * macs.macs == 2 * 4 * 4 * 4 * 27
    assert "MACs" in str(macs) and "multiply-adds" in str(macs)
    assert "FLOPs" in str(flops) and f"{2 * macs.macs:,}" in str(flops)
    d = flops.to_dict()
    assert d["flops"] == 2 * d["macs"] and d["rows"][1]["type"] == "Conv2d"


def test_activation_memory_is_new_outputs_only():
    # In-place ReLU and Flatten (a view) allocate nothing; the conv's output does.
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten())
    s = summary(model, (3, 5, 5), batch_size=2)
    assert s.activation_bytes == 2 * 4 * 5 * 5 * 4  # float32
    assert s.param_bytes == (4 * 27 + 4) * 4


def test_real_model_is_left_as_it_was():
    model = torchvision.models.resnet18(num_classes=3)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = summary(model, (3, 32, 32), backward=True)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched
    assert all(p.grad is None for p in model.parameters())
    assert s.macs == summary(meta(torchvision.models.resnet18, num_classes=3), (3, 32, 32)).macs
    assert s.backward_macs > s.macs


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError, match="input of size"):
        summary(nn.Linear(10, 5), (3, 8, 8))
    with pytest.raises(UserError, match="units"):
        summary(nn.Linear(10, 5), (10,), units="watts")
    with pytest.raises(UserError, match="only apply when the model is given by name"):
        summary(nn.Linear(10, 5), (10,), num_classes=3)


def test_summary_is_reachable_from_the_package():
    assert cnnzoo.summary is summary
    assert math.isclose(cnnzoo.summary("resnet18", (3, 64, 64)).macs,
                        summary(meta(torchvision.models.resnet18), (3, 64, 64)).macs)
