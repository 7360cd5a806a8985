"""Keras' weights in cnnzoo: the HDF5 files ``keras.applications`` publishes, and Keras 3's ``.weights.h5``.

A file is read with h5py into one record, :class:`KerasWeights` (layer name -> arrays, in Keras'
order), from either layout: the legacy one (``model.save_weights("x.h5")`` of Keras 2, which is
what ``keras.applications`` publishes, with or without top; or ``model.save("x.h5")``, weights under
``model_weights``) or Keras 3's (``layers/<class name>/vars/<i>``, the layer's name in an attribute).
What the file holds (architecture, alpha, class count) is read from its layer names and shapes, the
matching cnnzoo model is built with ``layout="keras"`` (Keras' padding, eps, biases: see the
``LAYOUTS`` of each family) and each Keras layer's arrays go to the module its family names
(``keras_layer_names()``), transposed from Keras' channels-last kernels.

``"keras"`` instead of a path names the file Keras publishes for the model, alpha and resolution
(:data:`KERAS_FILES`): taken from Keras' own cache (``$KERAS_HOME/models``, else ``~/.keras/models``)
or downloaded there once, checked against the hash Keras' source carries (MD5, as Keras checks it).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from cnnzoo.errors import UserError
from cnnzoo.layers import make_divisible
from cnnzoo.models import Classifier
from cnnzoo.preprocessing import Preprocessing
from cnnzoo.pretrained import KERAS_NAME, keras_preprocessing
from cnnzoo.registry import check_model_args, get_model_info

try:
    import h5py
except ImportError:  # optional: only reading Keras files needs it, and then the error says what to install
    h5py = None

KERAS_ROOT = "https://storage.googleapis.com/tensorflow/keras-applications/"


# ----------------------------------------------------------------------------- the architectures


@dataclass(frozen=True)
class KerasArchitecture:
    """A ``keras.applications`` network and its cnnzoo twin (built with ``layout="keras"``); its
    ``preprocess_input`` mode is :data:`cnnzoo.pretrained.KERAS_MODES`' (how its weights are fed is
    known below this module, to the training data's preprocessing)."""
    model: str          # cnnzoo's name
    keras_name: str     # keras.applications' function
    alphas: tuple = ()  # the published widths (MobileNets)
    sizes: tuple = ()   # the published resolutions (MobileNets); others are 224 only


ARCHITECTURES = {a.model: a for a in [
    KerasArchitecture("mobilenet_v1", "MobileNet", (0.25, 0.5, 0.75, 1.0), (128, 160, 192, 224)),
    KerasArchitecture("mobilenet_v2", "MobileNetV2", (0.35, 0.5, 0.75, 1.0, 1.3, 1.4), (96, 128, 160, 192, 224)),
    KerasArchitecture("vgg16", "VGG16"),
    KerasArchitecture("vgg19", "VGG19"),
    KerasArchitecture("resnet50", "ResNet50"),
    KerasArchitecture("resnet101", "ResNet101"),
    KerasArchitecture("resnet152", "ResNet152"),
    KerasArchitecture("densenet121", "DenseNet121"),
    KerasArchitecture("densenet169", "DenseNet169"),
    KerasArchitecture("densenet201", "DenseNet201"),
]}


# ----------------------------------------------------------------------------- the published files


@dataclass(frozen=True)
class KerasFile:
    """One file ``keras.applications`` downloads for ``weights="imagenet"``."""
    model: str
    file_name: str
    address: str
    md5: Optional[str]          # Keras' file_hash; None where its source carries none (the MobileNets)
    include_top: bool
    width_mult: float = 1.0
    image_size: int = 224


def _published_files() -> list[KerasFile]:
    # File names, addresses and hashes as keras/src/applications/{mobilenet,mobilenet_v2,vgg16,vgg19,
    # resnet,densenet}.py (Keras 3.15) build them.
    files = []
    for alpha in ARCHITECTURES["mobilenet_v1"].alphas:
        text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[alpha]
        for size in ARCHITECTURES["mobilenet_v1"].sizes:
            for top, suffix in ((True, "tf"), (False, "tf_no_top")):
                name = f"mobilenet_{text}_{size}_{suffix}.h5"
                files.append(KerasFile("mobilenet_v1", name, f"{KERAS_ROOT}mobilenet/{name}", None, top, alpha, size))
    for alpha in ARCHITECTURES["mobilenet_v2"].alphas:
        for size in ARCHITECTURES["mobilenet_v2"].sizes:
            for top, suffix in ((True, ""), (False, "_no_top")):
                name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{size}{suffix}.h5"
                address = f"{KERAS_ROOT}mobilenet_v2/{name}"
                files.append(KerasFile("mobilenet_v2", name, address, None, top, alpha, size))
    hashes = {  # (with top, without top)
        "vgg16": ("64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc"),
        "vgg19": ("cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6"),
        "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
        "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
        "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
        "densenet121": ("9d60b8095a5708f2dcce2bca79d332c7", "30ee3e1110167f948a6b9946edeeb738"),
        "densenet169": ("d699b8f76981ab1b30698df4c175e90b", "b8c4d4c20dd625c148057b9ff1c1176b"),
        "densenet201": ("1ceb130c1ea1b78c3bf6114dbdfd8807", "c13680b51ded0fb44dff2d8f86ac8bb1"),
    }
    for model, (top_md5, notop_md5) in hashes.items():
        folder = {"vgg": model, "res": "resnet", "den": "densenet"}[model[:3]]
        for top, md5, suffix in ((True, top_md5, ""), (False, notop_md5, "_notop")):
            name = f"{model}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
            files.append(KerasFile(model, name, f"{KERAS_ROOT}{folder}/{name}", md5, top))
    return files


KERAS_FILES: tuple[KerasFile, ...] = tuple(_published_files())


def published_keras_file(model: str, *, width_mult: float = 1.0, image_size: int = 224,
                         include_top: bool = True) -> KerasFile:
    """The row of :data:`KERAS_FILES` for ``model`` at that alpha and resolution (UserError if none)."""
    arch = ARCHITECTURES.get(model)
    if arch is None:
        raise UserError(f"Keras publishes no weights for {model!r}; it does for {', '.join(ARCHITECTURES)}")
    for row in KERAS_FILES:
        if (row.model, row.include_top) == (model, include_top) and (
                not arch.alphas or (row.width_mult, row.image_size) == (width_mult, image_size)):
            return row
    raise UserError(f"Keras publishes {arch.keras_name} weights for alpha in {', '.join(map(str, arch.alphas))} "
                    f"at {', '.join(map(str, arch.sizes))} px, not alpha={width_mult} at {image_size} px: "
                    "choose one of those (--width-mult, --image-size)")


def keras_cache_dir() -> Path:
    """Where ``keras.utils.get_file`` keeps ``keras.applications``' files: ``$KERAS_HOME/models``,
    else ``~/.keras/models``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "models"


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _check_md5(path: Path, row: KerasFile, what: str) -> None:
    if row.md5 is not None and (digest := md5_of(path)) != row.md5:
        raise UserError(f"{what} {str(path)!r} is not Keras' {row.file_name}: its MD5 is {digest}, the "
                        f"published file's (Keras' own source) {row.md5}. Delete it and run again, or fetch "
                        f"{row.address} there yourself")


def resolve_keras_file(row: KerasFile, *, progress: bool = True) -> Path:
    """``row``'s file: from Keras' cache (hash checked), else downloaded there once (hash checked
    before it is moved into place). A file Keras' source gives no hash for is not downloaded."""
    path = keras_cache_dir() / row.file_name
    if path.is_file():
        _check_md5(path, row, "the cached file")
        return path
    arch = ARCHITECTURES[row.model]
    by_keras = (f"keras.applications.{arch.keras_name}("
                + (f"alpha={row.width_mult}, input_shape=({row.image_size}, {row.image_size}, 3), "
                   if arch.alphas else "")
                + f"include_top={row.include_top}, weights='imagenet')")
    if row.md5 is None:
        raise UserError(f"{row.file_name} is not in Keras' cache ({path.parent}), and Keras' source carries no "
                        f"hash for it, so cnnzoo does not download it unchecked. Run {by_keras} once (Keras "
                        f"puts the file there), or download {row.address} to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = path.with_name(path.name + ".part")
    if progress:
        print(f"downloading Keras' {arch.keras_name} weights from {row.address} to {path}", file=sys.stderr)
    try:
        with urllib.request.urlopen(row.address, timeout=30) as response, open(partial_path, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
        _check_md5(partial_path, row, "the download")
        os.replace(partial_path, path)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise UserError(f"cannot download {row.address} ({reason}). Offline, put Keras' {row.file_name} at "
                        f"{path} (where {by_keras} keeps it), or give the file's path") from None
    finally:
        partial_path.unlink(missing_ok=True)
    return path


# ----------------------------------------------------------------------------- reading a file


@dataclass(frozen=True)
class KerasWeights:
    """The arrays of a Keras weight file by layer name, each layer's in Keras' order (kernel, bias;
    gamma, beta, moving mean, moving variance)."""
    path: str
    format: str                                  # "legacy h5" or "keras 3"
    layers: dict[str, list[np.ndarray]] = field(repr=False)


def read_keras_weights(path: Union[str, os.PathLike]) -> KerasWeights:
    """Read a legacy ``.h5`` (``keras.applications``' files, ``save_weights`` / ``save`` of Keras 2)
    or a Keras 3 ``.weights.h5``. UserError for a file h5py cannot read (truncated, not HDF5)."""
    if h5py is None:
        raise UserError("reading Keras weight files needs h5py: pip install h5py")
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise UserError(f"Keras weight file {str(path)!r} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if "layers" in f and "layer_names" not in f.attrs:
                return KerasWeights(str(path), "keras 3", _read_keras3(f["layers"]))
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in group.attrs:
                raise UserError(f"{str(path)!r} is an HDF5 file but not Keras weights: it has neither "
                                "'layer_names' (Keras 2's .h5) nor 'layers' (Keras 3's .weights.h5)")
            return KerasWeights(str(path), "legacy h5", _read_legacy(group))
    except (OSError, KeyError, ValueError) as err:
        raise UserError(f"cannot read Keras weight file {str(path)!r} ({err}): it is not HDF5 or it is cut "
                        "short (an interrupted download or copy?). Fetch it again") from None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_legacy(group) -> dict[str, list[np.ndarray]]:
    layers = {}
    for name in map(_text, group.attrs["layer_names"]):
        weight_names = [_text(w) for w in group[name].attrs.get("weight_names", [])]
        if weight_names:
            layers[name] = [np.asarray(group[name][w]) for w in weight_names]
    return layers


def _read_keras3(group) -> dict[str, list[np.ndarray]]:
    layers = {}
    for key in group:
        variables = group[key].get("vars")
        if variables is None or not len(variables):
            continue
        name = _text(variables.attrs.get("name", key))
        layers[name] = [np.asarray(variables[str(i)]) for i in range(len(variables))]
    return layers


# ----------------------------------------------------------------------------- what a file holds


@dataclass(frozen=True)
class KerasContents:
    """What a Keras weight file holds, read from its layer names and shapes."""
    model: str                        # cnnzoo's name of the architecture
    width_mult: Optional[float]       # the MobileNets' alpha (None: not a width family)
    num_classes: Optional[int]        # None: no top (a file for feature extraction / a new head)
    head_pool: Optional[int] = None   # VGG: the side of the map its fc1 flattened (input side / 32)

    def describe(self) -> str:
        arch = ARCHITECTURES[self.model]
        alpha = f" alpha={self.width_mult:g}" if self.width_mult is not None else ""
        top = f"a {self.num_classes}-class top" if self.num_classes else "no top"
        return f"Keras' {arch.keras_name}{alpha} ({self.model} in cnnzoo) with {top}"


def identify(weights: KerasWeights) -> KerasContents:
    """The architecture, alpha and class count of ``weights`` (UserError for one cnnzoo has no twin of)."""
    layers = weights.layers

    def out_channels(name: str) -> int:
        return int(layers[name][0].shape[-1])

    def classes(name: str) -> Optional[int]:
        return out_channels(name) if name in layers else None

    def count(prefix: str) -> int:
        return sum(1 for n in layers if n.startswith(prefix) and n.endswith("_1_conv"))

    if "conv_dw_1" in layers:
        alpha = out_channels("conv_pw_13") / 1024
        return KerasContents("mobilenet_v1", alpha, classes("conv_preds"))
    if "block_16_project" in layers:
        width = out_channels("block_16_project")
        alpha = next((a for a in ARCHITECTURES["mobilenet_v2"].alphas if make_divisible(int(320 * a)) == width),
                     width / 320)
        return KerasContents("mobilenet_v2", alpha, classes("predictions"))
    if "block1_conv1" in layers:
        model = "vgg19" if "block5_conv4" in layers else "vgg16"
        pool = None
        if "fc1" in layers:
            pool = round((layers["fc1"][0].shape[0] / out_channels("block5_conv3")) ** 0.5)
        return KerasContents(model, None, classes("predictions"), pool)
    if "conv2_block1_0_conv" in layers:
        resnet = {6: "resnet50", 23: "resnet101", 36: "resnet152"}.get(count("conv4_block"))
        if resnet:
            return KerasContents(resnet, None, classes("predictions"))
    if "conv2_block1_0_bn" in layers:
        densenet = {24: "densenet121", 32: "densenet169", 48: "densenet201"}.get(count("conv4_block"))
        if densenet:
            return KerasContents(densenet, None, classes("predictions"))
    names = ", ".join(list(layers)[:6])
    raise UserError(f"{weights.path!r} holds no network cnnzoo knows from keras.applications (its first layers: "
                    f"{names}...); it reads {', '.join(a.keras_name for a in ARCHITECTURES.values())}")


# ----------------------------------------------------------------------------- the entry point


def load_keras_weights(path_or_name: Union[str, os.PathLike], model_name: str, num_classes: Optional[int] = None,
                       *, image_size: Optional[int] = None, progress: bool = True,
                       **model_args: Any) -> tuple[nn.Module, Preprocessing]:
    """Build ``model_name`` as Keras builds it and fill it with a Keras weight file's arrays.

    ``path_or_name``: a ``.h5`` / ``.weights.h5`` file, or ``"keras"`` for the file Keras publishes
    for this model at ``width_mult`` (alpha) and ``image_size`` (see :func:`resolve_keras_file`).
    The file decides the layout, alpha and class count; a file for another architecture, alpha or
    class count is refused, saying what it holds. A file without top gets a new classifier for
    ``num_classes`` (1000 if not given). Returns the model and the input convention of the weights
    (Keras' ``preprocess_input`` mode for the family, at ``image_size``, by default 224 or the file's).
    """
    model, preprocessing, _ = load_keras_weights_with_args(path_or_name, model_name, num_classes,
                                                           image_size=image_size, progress=progress, **model_args)
    return model, preprocessing


def load_keras_weights_with_args(path_or_name: Union[str, os.PathLike], model_name: str,
                                 num_classes: Optional[int] = None, *, image_size: Optional[int] = None,
                                 progress: bool = True,
                                 **model_args: Any) -> tuple[nn.Module, Preprocessing, dict[str, Any]]:
    """:func:`load_keras_weights`, plus every constructor argument the model was built with (``layout``,
    alpha, class count, VGG's ``pool_size``): what a checkpoint must store to rebuild it."""
    if model_name not in ARCHITECTURES:
        raise UserError(f"Keras publishes no {model_name!r}; cnnzoo reads Keras weights for "
                        f"{', '.join(ARCHITECTURES)}")
    if model_args.pop("layout", "keras") != "keras":
        raise UserError("Keras weights fit layout='keras' only")
    if str(path_or_name).lower() == KERAS_NAME:
        include_top = num_classes in (None, 1000)
        row = published_keras_file(model_name, width_mult=model_args.get("width_mult", 1.0),
                                   image_size=image_size or 224, include_top=include_top)
        path, image_size = resolve_keras_file(row, progress=progress), row.image_size
    else:
        path = Path(os.fspath(path_or_name))
    weights = read_keras_weights(path)
    held = identify(weights)
    args = {"layout": "keras", **_model_args(held, model_name, num_classes, model_args, weights.path)}
    check_model_args(model_name, args)
    model = get_model_info(model_name).builder(**args)
    assert isinstance(model, Classifier)  # every architecture Keras publishes is one of our classifiers
    _load_into(model, weights, held)
    return model, keras_preprocessing(model_name, image_size or 224), args


def _model_args(held: KerasContents, model_name: str, num_classes: Optional[int], model_args: dict,
                path: str) -> dict:
    if held.model != model_name:
        raise UserError(f"{path!r} holds {held.describe()}, not {model_name}: load it as {held.model}")
    args = dict(model_args)
    if held.width_mult is not None:
        asked = args.setdefault("width_mult", held.width_mult)
        if abs(asked - held.width_mult) > 1e-6:
            raise UserError(f"{path!r} holds {held.describe()}, not width_mult={asked}: drop --width-mult "
                            f"or give {held.width_mult:g}")
    if held.num_classes is not None:
        if num_classes not in (None, held.num_classes):
            raise UserError(f"{path!r} holds {held.describe()}, not {num_classes} classes: use the file "
                            "without top for a new classifier (Keras' include_top=False / *_notop.h5)")
        num_classes = held.num_classes
    if held.head_pool is not None:
        args["pool_size"] = held.head_pool
    return args | ({"num_classes": num_classes} if num_classes is not None else {})


def _load_into(model: Classifier, weights: KerasWeights, held: KerasContents) -> None:
    names = model.keras_layer_names()
    modules = dict(model.named_modules())
    used = set()
    with torch.no_grad():
        for path, keras_name in names.items():
            module = modules.get(path)
            if not isinstance(module, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)):
                continue
            arrays = weights.layers.get(keras_name)
            if arrays is None:
                if held.num_classes is None and path.startswith("head."):
                    continue  # a file without top: this model's head stays as built, new
                raise UserError(f"{weights.path!r} has no layer {keras_name!r}, which {held.model}'s "
                                f"{path} needs: the file is not {held.describe()}")
            for name, value in _torch_tensors(module, arrays, keras_name, held).items():
                target = getattr(module, name)
                if tuple(value.shape) != tuple(target.shape):
                    raise UserError(f"{weights.path!r}: layer {keras_name!r} has {name} of shape "
                                    f"{tuple(value.shape)}, {held.model}'s {path} takes {tuple(target.shape)}")
                target.copy_(value)
            used.add(keras_name)
    unused = [n for n in weights.layers if n not in used]
    if unused:
        raise UserError(f"{weights.path!r} has layers {held.model} has no place for ({', '.join(unused[:5])}"
                        f"{'...' if len(unused) > 5 else ''}): it is not {held.describe()}")


def _torch_tensors(module: nn.Module, arrays: list[np.ndarray], keras_name: str,
                   held: KerasContents) -> dict[str, torch.Tensor]:
    tensors = [torch.from_numpy(np.ascontiguousarray(a)).float() for a in arrays]
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return dict(zip(("weight", "bias", "running_mean", "running_var"), tensors))
    kernel, rest = tensors[0], tensors[1:]
    if isinstance(module, nn.Conv2d):
        # Keras: (kh, kw, in, out); depthwise (kh, kw, in, multiplier). PyTorch: (out, in / groups, kh, kw).
        weight = (kernel.permute(2, 3, 0, 1).reshape(module.weight.shape) if module.groups > 1
                  else kernel.permute(3, 2, 0, 1))
    else:
        # Dense: (in, out); MobileNet's conv_preds, a 1x1 conv: (1, 1, in, out).
        kernel = kernel.reshape(-1, kernel.shape[-1])
        if keras_name == "fc1" and held.head_pool and held.head_pool > 1:
            # VGG flattens its map channels-last (h, w, c) and we flatten (c, h, w): reorder the rows
            side = held.head_pool
            kernel = kernel.reshape(side, side, -1, kernel.shape[-1]).permute(2, 0, 1, 3).reshape(kernel.shape)
        weight = kernel.t()
    return {"weight": weight.contiguous(), **({"bias": rest[0]} if rest else {})}
