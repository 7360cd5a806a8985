"""Every registered architecture: forward/backward, the head API, exact parameter counts, options."""
import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.registry import ModelError, get_model_info

ALL_MODELS = cnnzoo.list_models(task="image")  # WaveNet (task "sequence") has tests of its own
NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def keras_counts(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) as Keras' model.summary() counts them: BN running mean and var are
    non-trainable parameters there."""
    stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    return n_params(model) + stats, n_params(model)


def build_on_meta(name: str, **args) -> nn.Module:
    # No memory, no initialisation: structure only (counts are identical, see the test below).
    with torch.device("meta"):
        return cnnzoo.create_model(name, **args)


def test_every_family_is_registered():
    families = {get_model_info(n).family for n in ALL_MODELS}
    assert families == {"vgg", "googlenet", "resnet", "mobilenet", "densenet", "efficientnet", "shufflenet",
                        "squeezenet"}
    assert len(ALL_MODELS) == 41
    for name in ALL_MODELS:
        info = get_model_info(name)
        assert info.paper and info.input_size == (3, *[DESIGN_SIZES.get(name, 224)] * 2)


# EfficientNet's compound scaling raises the resolution with the model (Tan & Le 2019, section 3.3; the
# sizes are those of the official TensorFlow release's efficientnet_builder.py and of its Lite variants'
# efficientnet_lite_builder.py). Every other family is designed at 224 px.
DESIGN_SIZES = {"efficientnet_b1": 240, "efficientnet_b2": 260, "efficientnet_b3": 300, "efficientnet_b4": 380,
                "efficientnet_b5": 456, "efficientnet_b6": 528, "efficientnet_b7": 600,
                "efficientnet_lite1": 240, "efficientnet_lite2": 260, "efficientnet_lite3": 280,
                "efficientnet_lite4": 300}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward(name):
    torch.manual_seed(0)
    # narrow versions keep this fast; the full widths are checked by the parameter counts below
    model = cnnzoo.create_model(name, num_classes=7, width_mult=0.25)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.get_classifier().weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.dim() == 4
        assert torch.equal(model.forward_head(features), model(x))
        assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)


@pytest.mark.parametrize("name", ["resnet18", "vgg11", "googlenet", "mobilenet_v1", "mobilenet_v2",
                                  "densenet121"])
def test_head_api(name):
    model = cnnzoo.create_model(name, num_classes=10, width_mult=0.25, in_chans=1).eval()
    x = torch.randn(1, 1, 40, 40)
    assert model(x).shape == (1, 10) and model.num_classes == 10
    model.reset_classifier(3)
    assert model(x).shape == (1, 3) and model.num_classes == 3
    model.reset_classifier(0)  # a feature extractor
    assert model(x).shape == (1, model.num_features)


# Parameter counts (numel of all parameters, 1000 classes) of torchvision 0.29's models: the
# `num_params` in each weight enum's meta (torchvision.models.<Model>_Weights.IMAGENET1K_V1.meta).
TORCHVISION_PARAMS = {
    "vgg11": 132_863_336, "vgg11_bn": 132_868_840, "vgg13": 133_047_848, "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544, "vgg16_bn": 138_365_992, "vgg19": 143_667_240, "vgg19_bn": 143_678_248,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnet152": 60_192_808, "mobilenet_v2": 3_504_872, "densenet121": 7_978_856,
    "densenet161": 28_681_000, "densenet169": 14_149_480, "densenet201": 20_013_928,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_count_equals_torchvision(name):
    assert n_params(build_on_meta(name)) == TORCHVISION_PARAMS[name]


def test_googlenet_parameter_counts():
    # torchvision's GoogLeNet without aux heads (GoogLeNet_Weights.IMAGENET1K_V1.meta: 6,624,904)
    assert n_params(build_on_meta("googlenet", large_branch_kernel=3)) == 6_624_904
    # the study notes' Keras GoogLeNet (no norm, conv biases, 5x5 branches): "Total params: 6,998,552"
    assert n_params(build_on_meta("googlenet", norm="none", conv_bias=True)) == 6_998_552


@pytest.mark.parametrize("name, args, total, trainable", [
    # Keras applications' MobileNet(alpha=1.0) summary: total 4,253,864, trainable 4,231,976
    ("mobilenet_v1", {}, 4_253_864, 4_231_976),
    # the study notes' MobileNet (convs with biases): total 4,264,808, trainable 4,242,920
    ("mobilenet_v1", {"conv_bias": True}, 4_264_808, 4_242_920),
    # the study notes' MobileNet alpha=0.5 for 10 classes: "Total params: 834,666", trainable 823,722
    ("mobilenet_v1", {"width_mult": 0.5, "num_classes": 10}, 834_666, 823_722),
    # the study notes' ResNet50 (Keras convs have biases): total 25,636,712, trainable 25,583,592
    ("resnet50", {"conv_bias": True}, 25_636_712, 25_583_592),
    # the study notes' comparison table: MobileNetV2 alpha=0.5, 5 classes: 712,629; VGG16: 134,281,029
    ("mobilenet_v2", {"width_mult": 0.5, "num_classes": 5}, 712_629, None),
    ("vgg16", {"num_classes": 5}, 134_281_029, 134_281_029),
    # Keras applications' DenseNet121 summary: total 8,062,504, trainable 7,978,856
    ("densenet121", {}, 8_062_504, 7_978_856),
])
def test_keras_style_counts(name, args, total, trainable):
    got_total, got_trainable = keras_counts(build_on_meta(name, **args))
    assert got_total == total
    if trainable is not None:
        assert got_trainable == trainable


def test_meta_device_counts_match_a_real_build():
    real = cnnzoo.create_model("mobilenet_v2")
    assert keras_counts(real) == keras_counts(build_on_meta("mobilenet_v2"))


@pytest.mark.parametrize("name", ["vgg11_bn", "googlenet", "resnet50", "mobilenet_v1", "mobilenet_v2",
                                  "densenet121"])
def test_norm_none_removes_every_normalisation(name):
    model = build_on_meta(name, norm="none", conv_bias=True)
    assert not any(isinstance(m, NORM_TYPES) for m in model.modules())
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("name, norm", [("resnet18", "group"), ("mobilenet_v2", "layer"),
                                        ("densenet121", "instance"), ("googlenet", "group"),
                                        ("vgg11", "group"), ("mobilenet_v1", "instance")])
def test_trains_a_step_with_batch_size_one(name, norm):
    torch.manual_seed(0)
    model = cnnzoo.create_model(name, norm=norm, num_classes=3, width_mult=0.25)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    # 64 px keeps the last feature map at 2x2: instance norm of a single value is undefined
    loss = nn.functional.cross_entropy(model(torch.randn(1, 3, 64, 64)), torch.tensor([2]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert changed > len(before) // 2


def test_googlenet_aux_heads_keep_a_plain_loss_working():
    torch.manual_seed(0)
    model = cnnzoo.create_model("googlenet", aux_logits=True, num_classes=4, width_mult=0.25)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 3])
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4)
    nn.functional.cross_entropy(out, y).backward()

    logits, aux = model.forward_train(x)
    assert len(aux) == 2 and all(a.shape == (2, 4) for a in aux)
    loss = nn.functional.cross_entropy(logits, y) + 0.3 * sum(nn.functional.cross_entropy(a, y) for a in aux)
    loss.backward()
    assert model.aux1.fc.weight.grad is not None
    model.eval()
    assert model.forward_train(x)[1] == []
    model.reset_classifier(6)
    assert model.aux2.fc.out_features == 6


def test_googlenet_layouts_differ_only_in_the_large_branch():
    paper = build_on_meta("googlenet")
    tv = build_on_meta("googlenet", large_branch_kernel=3)
    assert paper.blocks.inception3a.branch3.conv.conv.kernel_size == (5, 5)
    assert tv.blocks.inception3a.branch3.conv.conv.kernel_size == (3, 3)
    assert paper.head.drop.p == 0.4  # the paper's dropout


def test_resnet_stride_in_1x1_option():
    default = build_on_meta("resnet50")
    paper = build_on_meta("resnet50", stride_in_1x1=True)
    assert default.stages[1][0].conv2.conv.stride == (2, 2) and default.stages[1][0].conv1.conv.stride == (1, 1)
    assert paper.stages[1][0].conv1.conv.stride == (2, 2) and paper.stages[1][0].conv2.conv.stride == (1, 1)
    assert n_params(default) == n_params(paper)


@pytest.mark.parametrize("width_mult", [0.25, 0.3, 0.75, 1.3])
def test_mobilenet_v1_any_alpha_any_resolution(width_mult):
    model = cnnzoo.create_model("mobilenet_v1", width_mult=width_mult, num_classes=5).eval()
    widths = [b.pointwise.conv.out_channels for b in model.blocks]
    assert all(w % 8 == 0 for w in widths) and model.num_features == widths[-1]
    with torch.no_grad():
        for size in (32, 57):
            assert model(torch.randn(1, 3, size, size)).shape == (1, 5)


def test_mobilenet_v1_rejects_a_non_positive_alpha():
    with pytest.raises(ModelError, match="width_mult must be > 0"):
        cnnzoo.create_model("mobilenet_v1", width_mult=0)


def test_mobilenet_v2_last_conv_width():
    assert build_on_meta("mobilenet_v2", width_mult=0.5).num_features == 1280  # stays 1280 for alpha <= 1
    assert build_on_meta("mobilenet_v2", width_mult=1.4).num_features == 1792


def test_vgg_pre_logits_is_the_hidden_vector():
    model = cnnzoo.create_model("vgg11", width_mult=0.25, num_classes=3).eval()
    assert model.num_features == 1024
    assert model.forward_head(model.forward_features(torch.randn(1, 3, 32, 32)), pre_logits=True).shape == (1, 1024)


def test_he_initialisation():
    torch.manual_seed(0)
    model = cnnzoo.create_model("vgg11", width_mult=0.5)
    conv = model.features.block3_conv1.conv  # 64 -> 128 channels at width 0.5
    expected_std = (2 / (conv.out_channels * 9)) ** 0.5  # He et al. 2015, fan_out mode
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0


def test_registered_defaults_are_plain_data():
    # checkpoints store model arguments and are read with weights_only=True: no classes or functions
    plain = (int, float, str, bool, tuple, type(None))
    for name in ALL_MODELS:
        for value in get_model_info(name).defaults.values():
            assert isinstance(value, plain) and (not isinstance(value, tuple) or all(
                isinstance(v, (int, str)) for v in value)), (name, value)


def test_unknown_argument_is_reported_with_a_suggestion():
    with pytest.raises(ModelError, match="'width_mul'.*'width_mult'"):
        cnnzoo.create_model("resnet18", width_mul=0.5)
