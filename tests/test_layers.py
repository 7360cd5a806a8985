"""The building blocks on their own: shapes, channel arithmetic, parameter counts from the papers."""
import pytest
import torch
from torch import nn

from cnnzoo.layers import (
    BasicBlock,
    Bottleneck,
    Conv2d,
    ConvNormAct,
    DenseBlock,
    DenseLayer,
    DepthwiseSeparableConv,
    InceptionBlock,
    InceptionNaive,
    InvertedResidual,
    Transition,
    get_act_layer,
    get_norm_layer,
    make_divisible,
)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# (in, out, kernel, stride, padding, dilation, bias, input side): every case has an output of at most
# 2x2 positions and >= 65,536 weights, so Conv2d computes its weight gradient as a matrix product.
SMALL_OUTPUT_CASES = [
    (128, 256, 3, 1, 1, 1, False, 2),   # ResNet's last stage at 64 px input
    (128, 256, 3, 2, 1, 1, True, 4),    # stride 2, with a bias
    (128, 256, 3, 1, 0, 1, True, 3),    # no padding: a 1x1 output
    (128, 128, 3, 1, 2, 2, False, 2),   # dilated
    (64, 128, (3, 5), 1, (1, 2), 1, False, 2),  # a rectangular kernel
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cin, cout, k, stride, padding, dilation, bias, side", SMALL_OUTPUT_CASES)
def test_small_output_conv_gradients_equal_nn_conv2d(cin, cout, k, stride, padding, dilation, bias, side,
                                                     channels_last):
    torch.manual_seed(0)
    ours = Conv2d(cin, cout, k, stride, padding, dilation, bias=bias)
    reference = nn.Conv2d(cin, cout, k, stride, padding, dilation, bias=bias)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(4, cin, side, side)
    if channels_last:
        ours, reference = (m.to(memory_format=torch.channels_last) for m in (ours, reference))
        x = x.contiguous(memory_format=torch.channels_last)
    assert ours._takes_small_output_route(x)  # so this test checks the matrix-product gradient
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad_out = torch.randn_like(reference(x))
    y_ours, y_ref = ours(x_ours), reference(x_ref)
    torch.testing.assert_close(y_ours, y_ref, rtol=0, atol=0)  # the forward is PyTorch's own
    y_ours.backward(grad_out)
    y_ref.backward(grad_out)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    if bias:
        torch.testing.assert_close(ours.bias.grad, reference.bias.grad, rtol=1e-5, atol=1e-5)


def test_small_output_route_only_where_it_was_measured_faster():
    conv = Conv2d(128, 256, 3, padding=1)
    assert conv._takes_small_output_route(torch.randn(2, 128, 2, 2))
    assert not conv._takes_small_output_route(torch.randn(2, 128, 3, 3))  # 9 output positions
    assert not Conv2d(128, 256, 1)._takes_small_output_route(torch.randn(2, 128, 2, 2))  # 1x1 kernel
    assert not Conv2d(16, 32, 3, padding=1)._takes_small_output_route(torch.randn(2, 16, 2, 2))  # small
    assert not Conv2d(128, 256, 3, padding=1, groups=2)._takes_small_output_route(torch.randn(2, 128, 2, 2))
    with torch.no_grad():
        assert not conv._takes_small_output_route(torch.randn(2, 128, 2, 2))  # inference
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # --amp on the CPU takes the route too, summing the weight gradient in float32: oneDNN's
        # bfloat16 kernel left entries unset here (a NaN in about one process in three)
        assert conv._takes_small_output_route(torch.randn(2, 128, 2, 2))
        conv(torch.randn(2, 128, 2, 2)).float().sum().backward()  # and it still trains
    assert conv.weight.grad is not None and conv.weight.grad.dtype == torch.float32
    assert torch.isfinite(conv.weight.grad).all()
    conv.requires_grad_(False)
    assert not conv._takes_small_output_route(torch.randn(2, 128, 2, 2))  # frozen


def test_conv_norm_act_children_and_bias():
    block = ConvNormAct(3, 8, 3, stride=2, norm="batch", act="relu")
    assert [n for n, _ in block.named_children()] == ["conv", "norm", "act"]
    assert block.conv.bias is None  # the norm's shift makes a bias redundant
    assert block(torch.randn(1, 3, 16, 16)).shape == (1, 8, 8, 8)
    bare = ConvNormAct(3, 8, 3, norm="none", act="none")
    assert [n for n, _ in bare.named_children()] == ["conv"] and bare.conv.bias is not None


@pytest.mark.parametrize("norm, kind", [("batch", nn.BatchNorm2d), ("layer", nn.GroupNorm),
                                        ("instance", nn.GroupNorm), ("group", nn.GroupNorm)])
def test_norm_factory_by_name_with_eps(norm, kind):
    layer = get_norm_layer(norm, eps=1e-3)(64)
    assert isinstance(layer, kind) and layer.eps == 1e-3
    assert get_norm_layer(norm)(64).eps == 1e-5


def test_group_norm_group_counts():
    assert get_norm_layer("layer")(48).num_groups == 1
    assert get_norm_layer("instance")(48).num_groups == 48
    assert get_norm_layer("group")(64).num_groups == 32
    assert get_norm_layer("group")(48).num_groups == 16  # gcd(32, 48): 48 is not divisible by 32


def test_factories_reject_unknown_names():
    with pytest.raises(ValueError, match="unknown norm 'btach'"):
        get_norm_layer("btach")
    with pytest.raises(ValueError, match="unknown activation 'rleu'"):
        get_act_layer("rleu")
    assert get_norm_layer("none") is None and get_act_layer("none") is None


@pytest.mark.parametrize("value, expected", [
    (32 * 0.35, 16),  # Keras/torchvision MobileNetV2 alpha=0.35: the stem has 16 filters, not 8
    (32 * 0.5, 16), (24 * 0.75, 24), (1280 * 1.4, 1792), (320 * 1.0, 320), (3.0, 8),
])
def test_make_divisible_matches_the_reference_rounding(value, expected):
    assert make_divisible(value, 8) == expected


def test_depthwise_separable_cost():
    block = DepthwiseSeparableConv(32, 64, stride=2, norm="none", act="relu")
    assert block.depthwise.conv.groups == 32
    # Howard et al. 2017 section 3.1: D_K^2 * M + M * N weights instead of D_K^2 * M * N
    assert n_params(block) == 3 * 3 * 32 + 32 * 64
    assert block(torch.randn(2, 32, 16, 16)).shape == (2, 64, 8, 8)


def test_inception_naive_keeps_the_pooled_input():
    block = InceptionNaive(192, 64, 128, 32, norm="none", act="relu", bias=True)
    assert block.out_channels == 64 + 128 + 32 + 192
    assert block(torch.randn(1, 192, 7, 7)).shape == (1, 416, 7, 7)
    # weights + biases of the 1x1, 3x3 and 5x5 convolutions
    assert n_params(block) == 192 * 64 + 64 + 9 * 192 * 128 + 128 + 25 * 192 * 32 + 32


def test_inception_3a_parameter_count():
    # inception (3a) of Szegedy et al. 2014, table 1 (no norm, conv biases): the study notes' Keras
    # summary lists its convs as 12,352 + 18,528 + 110,720 + 3,088 + 12,832 + 6,176 params.
    block = InceptionBlock(192, 64, 96, 128, 16, 32, 32, large_kernel=5, norm="none", bias=True)
    assert n_params(block) == 12352 + 18528 + 110720 + 3088 + 12832 + 6176
    assert block(torch.randn(1, 192, 28, 28)).shape == (1, 256, 28, 28)
    small = InceptionBlock(192, 64, 96, 128, 16, 32, 32, large_kernel=3, norm="none", bias=True)
    assert n_params(block) - n_params(small) == (25 - 9) * 16 * 32


def test_basic_block_projection_only_when_shape_changes():
    keep = BasicBlock(64, 64, stride=1)
    assert isinstance(keep.shortcut, nn.Identity)
    down = BasicBlock(64, 128, stride=2)
    assert down.shortcut.conv.kernel_size == (1, 1) and down.shortcut.conv.stride == (2, 2)
    assert down(torch.randn(2, 64, 8, 8)).shape == (2, 128, 4, 4)


@pytest.mark.parametrize("stride_in_1x1, strides", [(False, (1, 2)), (True, (2, 1))])
def test_bottleneck_stride_placement(stride_in_1x1, strides):
    block = Bottleneck(256, 128, stride=2, stride_in_1x1=stride_in_1x1)
    assert (block.conv1.conv.stride[0], block.conv2.conv.stride[0]) == strides
    assert block(torch.randn(2, 256, 8, 8)).shape == (2, 512, 4, 4)
    assert isinstance(Bottleneck(256, 64).shortcut, nn.Identity)


def test_residual_adds_the_input():
    block = BasicBlock(8, 8, norm="none", act="none")
    for p in block.parameters():
        nn.init.zeros_(p)  # F(x) = 0, so the block is the identity
    x = torch.randn(1, 8, 5, 5)
    assert torch.equal(block(x), x)


def test_inverted_residual():
    first = InvertedResidual(32, 16, stride=1, expand_ratio=1)
    assert not hasattr(first, "expand") and not first.use_residual
    block = InvertedResidual(24, 24, stride=1, expand_ratio=6)
    assert block.use_residual and block.expand.conv.out_channels == 144
    assert block.depthwise.conv.groups == 144
    assert not hasattr(block.project, "act")  # linear bottleneck
    assert InvertedResidual(24, 32, 2, 6)(torch.randn(2, 24, 8, 8)).shape == (2, 32, 4, 4)


def test_dense_layer_block_and_transition():
    layer = DenseLayer(64, growth_rate=32, bn_size=4)
    assert layer(torch.randn(2, 64, 8, 8)).shape == (2, 32, 8, 8)
    assert layer.conv1.out_channels == 128
    block = DenseBlock(6, 64, growth_rate=32)
    assert block.out_channels == 64 + 6 * 32
    x = torch.randn(2, 64, 8, 8)
    out = block(x)
    assert out.shape == (2, 256, 8, 8) and torch.equal(out[:, :64], x)  # the input is passed on
    transition = Transition(256, 128)
    assert transition(out).shape == (2, 128, 4, 4)
    assert [n for n, _ in Transition(256, 128, norm="none").named_children()] == ["act", "conv", "pool"]


def test_small_output_route_under_cpu_autocast_matches_float32_gradients():
    torch.manual_seed(0)
    ours = Conv2d(128, 256, 3, stride=2, padding=1, bias=True)
    reference = nn.Conv2d(128, 256, 3, stride=2, padding=1, bias=True)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(8, 128, 2, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ours(x)
    assert y.dtype == torch.bfloat16  # the forward in the precision autocast chose
    y.float().pow(2).sum().backward()
    # the float32 reference on the same bfloat16-rounded inputs and output gradient
    xr = x.to(torch.bfloat16).float()
    reference.weight.data = reference.weight.data.to(torch.bfloat16).float()
    reference(xr).pow(2).sum().backward(inputs=[reference.weight, reference.bias])
    assert ours.weight.grad.dtype == torch.float32 and torch.isfinite(ours.weight.grad).all()
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=0.05, atol=0.05)
    torch.testing.assert_close(ours.bias.grad, reference.bias.grad, rtol=0.05, atol=0.05)
