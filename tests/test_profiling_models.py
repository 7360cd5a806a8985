"""cnnzoo's own models counted against the papers, Keras' applications and the study notes.

``cnnzoo.summary(name, ...)`` builds each model on the meta device, so these are cheap. A failure
here means either the counter or the model's structure is wrong: the message says which figure.
"""
import pytest

from cnnzoo.profiling import summary

M, G = 1e6, 1e9


# ----------------------------------------------------------------------------- Keras-convention totals

@pytest.mark.parametrize("name,overrides,input_size,expected", [
    # Study notes' Keras VGG16 summary: Total params 138,357,544, all trainable.
    ("vgg16", {}, None, (138_357_544, 138_357_544, 0)),
    # The same VGG16 with a 5-class head (the notes' flowers example): 134,281,029.
    ("vgg16", {"num_classes": 5}, None, (134_281_029, 134_281_029, 0)),
    # keras.applications.ResNet50 (conv biases + batch norm): 25,636,712 / 25,583,592 / 53,120.
    ("resnet50", {"conv_bias": True}, None, (25_636_712, 25_583_592, 53_120)),
    # Study notes' MobileNet v1 (Conv2D/DepthwiseConv2D with biases): 4,264,808 / 4,242,920 / 21,888.
    ("mobilenet_v1", {"conv_bias": True}, None, (4_264_808, 4_242_920, 21_888)),
    # keras.applications.MobileNet (no conv biases): Total params 4,253,864.
    ("mobilenet_v1", {}, None, (4_253_864, 4_231_976, 21_888)),
    # Study notes' MobileNet(alpha=0.5) on 32x32 CIFAR-10 images: 834,666 / 823,722 / 10,944.
    ("mobilenet_v1", {"width_mult": 0.5, "num_classes": 10}, (3, 32, 32), (834_666, 823_722, 10_944)),
    # keras.applications.MobileNetV2(alpha=0.5, classes=5): Total params 712,629.
    ("mobilenet_v2", {"width_mult": 0.5, "num_classes": 5}, None, (712_629, 694_085, 18_544)),
    # Study notes' GoogLeNet (no normalisation, conv biases, 5x5 branches, no aux heads): 6,998,552.
    ("googlenet", {"norm": "none", "conv_bias": True, "large_branch_kernel": 5}, None, (6_998_552, 6_998_552, 0)),
    # keras.applications.DenseNet121: Total params 8,062,504 (non-trainable 83,648).
    ("densenet121", {}, None, (8_062_504, 7_978_856, 83_648)),
])
def test_keras_convention_totals(name, overrides, input_size, expected):
    s = summary(name, input_size, keras=True, **overrides)
    assert (s.total_params, s.trainable_params, s.non_trainable_params) == expected


# ----------------------------------------------------------------------------- MACs against the papers

@pytest.mark.parametrize("width,paper_macs,paper_params", [
    # MobileNet paper (Howard et al. 2017), table 6, 224 px: million mult-adds and million params.
    # (One MobileNet article among the study notes prints 529 on every row: a typo, the paper says 569.)
    (1.0, 569, 4.2), (0.75, 325, 2.6), (0.5, 149, 1.3), (0.25, 41, 0.5),
])
def test_mobilenet_v1_width_multiplier(width, paper_macs, paper_params):
    s = summary("mobilenet_v1", (3, 224, 224), width_mult=width)
    assert s.macs / M == pytest.approx(paper_macs, rel=0.03)
    assert round(s.total_params / M, 1) == paper_params  # the paper prints one decimal


@pytest.mark.parametrize("resolution,paper_macs", [
    # MobileNet paper, table 7 (alpha = 1.0): million mult-adds per resolution.
    (224, 569), (192, 418), (160, 290), (128, 186),
])
def test_mobilenet_v1_resolution(resolution, paper_macs):
    s = summary("mobilenet_v1", (3, resolution, resolution))
    assert s.macs / M == pytest.approx(paper_macs, rel=0.03)


@pytest.mark.parametrize("name,paper_gmacs", [
    # ResNet paper (He et al. 2015), table 1, "FLOPs" row (multiply-adds), original stride placement.
    ("resnet18", 1.8), ("resnet34", 3.6), ("resnet50", 3.8), ("resnet101", 7.6), ("resnet152", 11.3),
])
def test_resnet_paper_macs(name, paper_gmacs):
    s = summary(name, stride_in_1x1=True)
    assert s.macs / G == pytest.approx(paper_gmacs, rel=0.03)


@pytest.mark.parametrize("name,overrides,gmacs", [
    # torchvision's model docs ("GFLOPS" there are multiply-adds), for the layouts matching its models.
    ("resnet50", {}, 4.089),
    ("vgg16", {}, 15.47),
    ("mobilenet_v2", {}, 0.301),
    ("googlenet", {"large_branch_kernel": 3}, 1.498),
    ("densenet121", {}, 2.834),
])
def test_torchvision_layout_macs(name, overrides, gmacs):
    assert summary(name, **overrides).macs / G == pytest.approx(gmacs, rel=0.03)


def test_mobilenet_v1_training_step_counts_depthwise_backward_at_twice_forward():
    s = summary("mobilenet_v1", (3, 64, 64), width_mult=0.25, num_classes=10, backward=True)
    # Every layer except the first needs grad-input and grad-weight (2x); the first only grad-weight.
    first_conv = next(r for r in s.rows if r.macs > 0).macs
    assert s.backward_macs == 2 * s.macs - first_conv
