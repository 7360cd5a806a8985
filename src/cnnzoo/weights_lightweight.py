"""Reference state dicts of the lightweight families mapped onto cnnzoo's names: torchvision's
(MobileNetV3, EfficientNet B0-B7, ShuffleNetV2, SqueezeNet), one converter per family in
:data:`REFERENCE_CONVERTERS`, and the EfficientNet-PyTorch port's (EfficientNet and -Lite, the layout
of the Lite weight packages: :mod:`cnnzoo.pretrained_lite`). :func:`reference_converter` picks one
for a model and a file. Each converter takes the file's state dict and returns ``(ours, implied
constructor arguments)``, as ``ModelInfo.convert_reference_weights`` does; a key no rule places
raises ``KeyError`` with it (the caller turns that into a message about the file).
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Callable, Optional

from cnnzoo.models._convert import Rule, rename_keys
from cnnzoo.pretrained_lite import convert_efficientnet_port, is_port_layout

Converter = Callable[[dict], tuple[dict, dict]]


def _block_parts(state: dict, prefix: str) -> dict[str, str]:
    """``{torchvision sub-index: our part name}`` for one inverted residual under ``prefix``
    (``features.3.block.``): torchvision numbers the block's layers in order, and which exist
    (expansion, squeeze-excitation) varies, so the roles are read from the keys."""
    layers = defaultdict(set)
    for key in state:
        if key.startswith(prefix):
            index, rest = key[len(prefix):].split(".", 1)
            layers[int(index)].add(rest.split(".")[0])
    convs = [i for i in sorted(layers) if "fc1" not in layers[i]]
    roles = ["expand", "depthwise", "project"][3 - len(convs):]
    parts = {str(i): role for i, role in zip(convs, roles)}
    parts.update({str(i): "se" for i in layers if "fc1" in layers[i]})
    return parts


def _mbconv_rule(state: dict, block_prefix: Callable[[re.Match], tuple[str, int]]):
    """A rename rule for the keys of torchvision's inverted residual blocks: ``block_prefix(match)``
    gives the torchvision prefix up to the block's layer list and our block index; the rest of the
    match (group ``rest``) is ``<layer>.<0 conv | 1 norm | fc1 | fc2>.<tensor>``."""
    cache: dict[str, dict[str, str]] = {}

    def rename(m: re.Match) -> str:
        prefix, ours = block_prefix(m)
        parts = cache.setdefault(prefix, _block_parts(state, prefix))
        index, sub, tensor = m["rest"].split(".", 2)
        role = parts[index]
        if role == "se":
            return f"blocks.{ours}.se.{sub}.{tensor}"
        return f"blocks.{ours}.{role}.{'conv' if sub == '0' else 'norm'}.{tensor}"
    return rename


def convert_torchvision_mobilenet_v3(state: dict) -> tuple[dict, dict]:
    """torchvision ``mobilenet_v3_large`` / ``_small``: ``features.0`` the stem, ``features.1..n`` the
    blocks, ``features.n+1`` the last conv, ``classifier.0`` / ``.3`` the head's two linear layers."""
    last = max(int(k.split(".")[1]) for k in state if k.startswith("features."))
    rules: list[Rule] = [
        (r"features\.0\.0\.(.+)", r"stem.conv.\1"),
        (r"features\.0\.1\.(.+)", r"stem.norm.\1"),
        (rf"features\.{last}\.0\.(.+)", r"final_conv.conv.\1"),
        (rf"features\.{last}\.1\.(.+)", r"final_conv.norm.\1"),
        (r"features\.(\d+)\.block\.(?P<rest>.+)",
         _mbconv_rule(state, lambda m: (f"features.{m[1]}.block.", int(m[1]) - 1))),
        (r"classifier\.0\.(.+)", r"head.hidden.\1"),
        (r"classifier\.3\.(.+)", r"head.fc.\1"),
    ]
    return rename_keys(state, rules), {}


def convert_torchvision_efficientnet(state: dict) -> tuple[dict, dict]:
    """torchvision ``efficientnet_b0..b7``: ``features.0`` the stem, ``features.1..7`` the stages
    (``features.<stage>.<i>.block.<layer>``; ours are one flat ``blocks`` list), ``features.8`` the
    last conv, ``classifier.1`` the linear layer."""
    stage_blocks = defaultdict(set)
    for key in state:
        m = re.match(r"features\.(\d+)\.(\d+)\.block\.", key)
        if m:
            stage_blocks[int(m[1])].add(int(m[2]))
    first = {}  # our index of each stage's first block
    for stage in sorted(stage_blocks):
        first[stage] = sum(len(stage_blocks[s]) for s in stage_blocks if s < stage)
    last = max(int(k.split(".")[1]) for k in state if k.startswith("features."))
    rules: list[Rule] = [
        (r"features\.0\.0\.(.+)", r"stem.conv.\1"),
        (r"features\.0\.1\.(.+)", r"stem.norm.\1"),
        (rf"features\.{last}\.0\.(.+)", r"final_conv.conv.\1"),
        (rf"features\.{last}\.1\.(.+)", r"final_conv.norm.\1"),
        (r"features\.(\d+)\.(\d+)\.block\.(?P<rest>.+)",
         _mbconv_rule(state, lambda m: (f"features.{m[1]}.{m[2]}.block.", first[int(m[1])] + int(m[2])))),
        (r"classifier\.1\.(.+)", r"head.fc.\1"),
    ]
    return rename_keys(state, rules), {}


# torchvision's ShuffleNetV2 unit lists conv, norm (and ReLU) modules in one Sequential per branch;
# ours are ConvNormAct blocks: which of its indices is which of ours.
SHUFFLE_BRANCH1 = {"0": "0.conv", "1": "0.norm", "2": "1.conv", "3": "1.norm"}
SHUFFLE_BRANCH2 = {"0": "0.conv", "1": "0.norm", "3": "1.conv", "4": "1.norm", "5": "2.conv", "6": "2.norm"}


def convert_torchvision_shufflenet_v2(state: dict) -> tuple[dict, dict]:
    """torchvision ``shufflenet_v2_x*``: ``conv1``, ``stage2..4``, ``conv5``, ``fc``."""
    def unit(m: re.Match) -> str:
        table = SHUFFLE_BRANCH1 if m[3] == "1" else SHUFFLE_BRANCH2
        return f"stages.{int(m[1]) - 2}.{m[2]}.branch{m[3]}.{table[m[4]]}.{m[5]}"

    rules: list[Rule] = [
        (r"conv1\.0\.(.+)", r"stem.conv.\1"),
        (r"conv1\.1\.(.+)", r"stem.norm.\1"),
        (r"stage(\d)\.(\d+)\.branch([12])\.(\d)\.(.+)", unit),
        (r"conv5\.0\.(.+)", r"final_conv.conv.\1"),
        (r"conv5\.1\.(.+)", r"final_conv.norm.\1"),
        (r"fc\.(.+)", r"head.fc.\1"),
    ]
    return rename_keys(state, rules), {}


def convert_torchvision_squeezenet(state: dict) -> tuple[dict, dict]:
    """torchvision ``squeezenet1_0`` / ``1_1``: ``features.0`` the stem conv, then its ReLU (1), so
    ``features.k`` is our ``blocks.(k-2)`` (pools have no tensors); ``classifier.1`` the final conv."""
    rules: list[Rule] = [
        (r"features\.0\.(weight|bias)", r"stem.conv.\1"),
        (r"features\.(\d+)\.(squeeze|expand1x1|expand3x3)\.(weight|bias)",
         lambda m: f"blocks.{int(m[1]) - 2}.{m[2]}.conv.{m[3]}"),
        (r"classifier\.1\.(weight|bias)", r"head.fc.\1"),
    ]
    return rename_keys(state, rules), {}


REFERENCE_CONVERTERS: dict[str, Converter] = {
    "mobilenet_v3_large": convert_torchvision_mobilenet_v3,
    "mobilenet_v3_small": convert_torchvision_mobilenet_v3,
    **{f"efficientnet_b{i}": convert_torchvision_efficientnet for i in range(8)},
    **{f"shufflenet_v2_{w}": convert_torchvision_shufflenet_v2 for w in ("x0_5", "x1_0", "x1_5", "x2_0")},
    "squeezenet1_0": convert_torchvision_squeezenet,
    "squeezenet1_1": convert_torchvision_squeezenet,
}


def reference_converter(model_name: str, state: dict) -> Optional[Converter]:
    """The converter for ``state`` (a file's state dict that is not in our layout) into
    ``model_name``: the port's for an EfficientNet file in its layout, else torchvision's for the
    model, else None."""
    if model_name.startswith("efficientnet_") and is_port_layout(state):
        return convert_efficientnet_port
    return REFERENCE_CONVERTERS.get(model_name)
