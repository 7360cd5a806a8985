"""Published weights: which architectures have them, where the file lives, how to feed the model.

``weights="torchvision"`` (alias ``"imagenet"``) names the ImageNet-1k weights torchvision publishes
for the same architecture. :data:`TORCHVISION_WEIGHTS` records, per model, torchvision's file (the
address and file name its ``*_Weights.DEFAULT`` enum entry gives), the part of the file's SHA-256
that its name carries, and the preprocessing the weights expect. Resolving the name looks in the
torch hub cache first (``torch.hub.get_dir()/checkpoints/<file name>``: anyone who has used
torchvision's pretrained models has the file there already), else downloads it there once through
``torch.hub.download_url_to_file``, which shows a progress bar, checks the hash and leaves no
partial file. For EfficientNet-Lite0..2, which torchvision does not publish, the name gives the
weights the ``lite-weights`` packages install (:mod:`cnnzoo.pretrained_lite`). ``"keras"`` names the
file ``keras.applications`` publishes for the model, and a path ending in ``.h5`` is a Keras file:
both are read by :mod:`cnnzoo.keras_weights`, which sits above this module; what is known here is
only how such weights are fed (:data:`KERAS_MODES`). Anything else given as ``weights`` is a path
to a local file.

Weight files are only ever read as data (``weights_only=True``, in :mod:`cnnzoo.weights`).
"""
from __future__ import annotations

import functools
import hashlib
import http.client
import importlib.resources
import os
import sys
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from cnnzoo.checkpoint import Checkpoint, ImageFields, read_weights_file
from cnnzoo.errors import UserError
from cnnzoo.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from cnnzoo.pretrained_lite import has_lite_weights, lite_weights, lite_weights_file
from cnnzoo.registry import ModelError, get_model_info

# Names that select torchvision's ImageNet-1k weights (compared without case).
WEIGHT_NAMES = ("torchvision", "imagenet")
KERAS_NAME = "keras"  # keras.applications' published file for the model (compared without case)
KERAS_SUFFIX = ".h5"  # Keras 2's .h5 and Keras 3's .weights.h5
URL_ROOT = "https://download.pytorch.org/models/"
WeightsArg = Union[str, os.PathLike]


@dataclass(frozen=True)
class PublishedWeights:
    """One published weight file and how its model must be fed.

    ``hash_prefix``: torchvision publishes no full SHA-256 of its files; each file name carries the
    first hex digits of it (``resnet18-f37072fd.pth``), and ``torch.hub`` checks a file against that
    prefix (``check_hash=True`` / ``hash_prefix=``). So do we: the prefix is what is recorded.
    ``image_size`` is the crop the weights were evaluated at, ``resize_size`` the shorter side the
    image was resized to before that crop (torchvision's ``ImageClassification`` transform).
    """

    model: str
    file_name: str
    hash_prefix: str
    image_size: int = 224
    resize_size: int = 256
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    size_mb: float = 0.0        # torchvision's meta["_file_size"]
    imagenet_top1: float = 0.0  # torchvision's meta["_metrics"]["ImageNet-1K"]["acc@1"], percent
    url: str = ""               # default: URL_ROOT + file_name

    @property
    def address(self) -> str:
        return self.url or URL_ROOT + self.file_name

    def preprocessing(self) -> Preprocessing:
        """torchvision's transform as a record: a resize of the shorter side, then the centre crop."""
        return Preprocessing(self.image_size, self.mean, self.std, resize="shorter_crop")

    def describe(self) -> str:
        return (f"torchvision ImageNet-1k, {self.file_name} ({self.size_mb:.0f} MB, top-1 "
                f"{self.imagenet_top1:.1f} %, {self.image_size} px)")


def _row(model: str, file_name: str, resize_size: int, size_mb: float, top1: float, **kw) -> PublishedWeights:
    prefix = file_name.rsplit("-", 1)[1].split(".")[0]  # torch.hub's HASH_REGEX: "-<hex>." in the name
    return PublishedWeights(model, file_name, prefix, resize_size=resize_size, size_mb=size_mb,
                            imagenet_top1=top1, **kw)


# From torchvision 0.29's weight enums (torchvision/models/{resnet,vgg,googlenet,mobilenetv2,densenet,
# mobilenetv3,efficientnet,shufflenetv2,squeezenet}.py), the DEFAULT entry of each: IMAGENET1K_V1
# everywhere except resnet50/101/152, mobilenet_v2, mobilenet_v3_large, efficientnet_b1 and
# shufflenet_v2_x1_5/x2_0, whose DEFAULT is IMAGENET1K_V2 (a newer training recipe, evaluated after a
# resize to 232 px or 255 px). All are normalised with the ImageNet mean and std and evaluated on
# 224 px centre crops, except EfficientNet B1-B7 at their own resolution (image_size). torchvision
# resizes EfficientNet B0 and B2-B7 bicubically; Preprocessing has no interpolation field (our image
# decoding resizes one way for training, evaluation and prediction alike), so ours are bilinear.
TORCHVISION_WEIGHTS: dict[str, PublishedWeights] = {row.model: row for row in [
    #    model          file                         resize  MB       top-1
    _row("resnet18", "resnet18-f37072fd.pth", 256, 44.661, 69.758),
    _row("resnet34", "resnet34-b627a593.pth", 256, 83.275, 73.314),
    _row("resnet50", "resnet50-11ad3fa6.pth", 232, 97.790, 80.858),
    _row("resnet101", "resnet101-cd907fc2.pth", 232, 170.530, 81.886),
    _row("resnet152", "resnet152-f82ba261.pth", 232, 230.474, 82.284),
    _row("vgg11", "vgg11-8a719046.pth", 256, 506.840, 69.020),
    _row("vgg11_bn", "vgg11_bn-6002323d.pth", 256, 506.881, 70.370),
    _row("vgg13", "vgg13-19584684.pth", 256, 507.545, 69.928),
    _row("vgg13_bn", "vgg13_bn-abd245e5.pth", 256, 507.590, 71.586),
    _row("vgg16", "vgg16-397923af.pth", 256, 527.796, 71.592),
    _row("vgg16_bn", "vgg16_bn-6c64b313.pth", 256, 527.866, 73.360),
    _row("vgg19", "vgg19-dcbb9e9d.pth", 256, 548.051, 72.376),
    _row("vgg19_bn", "vgg19_bn-c79401a0.pth", 256, 548.143, 74.218),
    # torchvision builds GoogLeNet with transform_input=True when it loads these weights: the model
    # itself turns ImageNet-normalised input into (x - 0.5) / 0.5 first. Ours has no such step, so
    # the weights are fed what that step produces: mean = std = 0.5.
    _row("googlenet", "googlenet-1378be20.pth", 256, 49.731, 69.778, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    _row("mobilenet_v2", "mobilenet_v2-7ebf99e0.pth", 232, 13.598, 72.154),
    _row("densenet121", "densenet121-a639ec97.pth", 256, 30.845, 74.434),
    _row("densenet161", "densenet161-8d451a50.pth", 256, 110.369, 77.138),
    _row("densenet169", "densenet169-b2777c0a.pth", 256, 54.708, 75.600),
    _row("densenet201", "densenet201-c1103571.pth", 256, 77.373, 76.896),
    _row("mobilenet_v3_large", "mobilenet_v3_large-5c1a4163.pth", 232, 21.107, 75.274),
    _row("mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth", 256, 9.829, 67.668),
    _row("efficientnet_b0", "efficientnet_b0_rwightman-7f5810bc.pth", 256, 20.451, 77.692),
    _row("efficientnet_b1", "efficientnet_b1-c27df63c.pth", 255, 30.136, 79.838, image_size=240),
    _row("efficientnet_b2", "efficientnet_b2_rwightman-c35c1473.pth", 288, 35.174, 80.608, image_size=288),
    _row("efficientnet_b3", "efficientnet_b3_rwightman-b3899882.pth", 320, 47.184, 82.008, image_size=300),
    _row("efficientnet_b4", "efficientnet_b4_rwightman-23ab8bcd.pth", 384, 74.489, 83.384, image_size=380),
    _row("efficientnet_b5", "efficientnet_b5_lukemelas-1a07897c.pth", 456, 116.864, 83.444, image_size=456),
    _row("efficientnet_b6", "efficientnet_b6_lukemelas-24a108a5.pth", 528, 165.362, 84.008, image_size=528),
    _row("efficientnet_b7", "efficientnet_b7_lukemelas-c5b4e57e.pth", 600, 254.675, 84.122, image_size=600),
    _row("shufflenet_v2_x0_5", "shufflenetv2_x0.5-f707e7126e.pth", 256, 5.282, 60.552),
    _row("shufflenet_v2_x1_0", "shufflenetv2_x1-5666bf0f80.pth", 256, 8.791, 69.362),
    _row("shufflenet_v2_x1_5", "shufflenetv2_x1_5-3c479a10.pth", 232, 13.557, 72.996),
    _row("shufflenet_v2_x2_0", "shufflenetv2_x2_0-8be3c8ee.pth", 232, 28.433, 76.230),
    _row("squeezenet1_0", "squeezenet1_0-b66bff10.pth", 256, 4.778, 58.092),
    _row("squeezenet1_1", "squeezenet1_1-b8a52dc0.pth", 256, 4.729, 58.178),
]}

# keras.applications' preprocess_input mode of each architecture whose weights Keras publishes
# (keras/src/applications/*.py; Preprocessing.keras): what a Keras file for that model expects.
KERAS_MODES: dict[str, str] = {
    "mobilenet_v1": "tf", "mobilenet_v2": "tf",
    "vgg16": "caffe", "vgg19": "caffe", "resnet50": "caffe", "resnet101": "caffe", "resnet152": "caffe",
    "densenet121": "torch", "densenet169": "torch", "densenet201": "torch",
}


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """ImageNet-1k's 1,000 class names in the order of every published classifier's outputs (the
    package's ``imagenet_classes.txt``, torchvision's list: its header says where from)."""
    text = importlib.resources.files("cnnzoo").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line for line in text.splitlines() if line and not line.startswith("#"))
    if len(names) != 1000:  # a damaged installation, not bad input
        raise RuntimeError(f"cnnzoo's imagenet_classes.txt holds {len(names)} class names, not 1000; reinstall cnnzoo")
    return names


def is_weight_name(weights: WeightsArg) -> bool:
    """Whether ``weights`` names published weights (rather than a file). A name wins over a file of
    the same name in the current folder: write ``./imagenet`` for such a file."""
    return isinstance(weights, str) and weights.lower() in WEIGHT_NAMES


def is_keras_weights(weights: WeightsArg) -> bool:
    """Whether ``weights`` are Keras': the name "keras" (any case) or a path ending in ``.h5``."""
    text = os.fspath(weights)
    return isinstance(text, str) and (text.lower() == KERAS_NAME or text.lower().endswith(KERAS_SUFFIX))


def keras_preprocessing(model_name: str, image_size: int = 224) -> Preprocessing:
    """How Keras' weights for ``model_name`` expect images: its family's ``preprocess_input`` mode."""
    mode = KERAS_MODES.get(model_name)
    if mode is None:
        raise UserError(f"Keras publishes no {model_name!r}; cnnzoo reads Keras weights for "
                        f"{', '.join(KERAS_MODES)}")
    return Preprocessing.keras(mode, image_size)


def has_published_weights(model_name: str) -> bool:
    return model_name in TORCHVISION_WEIGHTS


def published_weights(model_name: str) -> PublishedWeights:
    """The table row of ``model_name``; :class:`ModelError` naming the models that have one otherwise."""
    get_model_info(model_name)  # an unknown name: "did you mean" first
    row = TORCHVISION_WEIGHTS.get(model_name)
    if row is None:
        raise ModelError(f"torchvision publishes no weights for {model_name!r}; models with ImageNet weights: "
                         f"{', '.join(TORCHVISION_WEIGHTS)}. Give a file instead (--weights PATH)")
    return row


def hub_cache_path(row: PublishedWeights) -> Path:
    """Where torch.hub (and so torchvision) keeps this file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / row.file_name


def resolve_weights_file(weights: WeightsArg, model_name: str, *, progress: bool = True) -> Path:
    """The local file ``weights`` stands for: a published name's file (from the hub cache, downloaded
    there if missing, hash checked either way; for EfficientNet-Lite0..2 the installed weight
    package's) or the path itself."""
    if not is_weight_name(weights):
        return Path(os.fspath(weights)).expanduser()
    if has_lite_weights(model_name):
        return lite_weights_file(model_name)
    row = published_weights(model_name)
    path = hub_cache_path(row)
    if path.is_file():
        check_hash(path, row)
        return path
    download(row, path, progress=progress)
    return path


def check_hash(path: Path, row: PublishedWeights) -> None:
    """``torch.hub``'s check: the file's SHA-256 starts with the prefix its name carries. A file in
    the cache that fails is refused but left where it is (it may not be ours to delete)."""
    digest = sha256_of(path)
    if not digest.startswith(row.hash_prefix):
        raise UserError(f"{str(path)!r} is not torchvision's {row.file_name}: its SHA-256 starts with "
                        f"{digest[:len(row.hash_prefix)]}, the published file's with {row.hash_prefix}. "
                        f"Delete it and run again to download it from {row.address}")


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download(row: PublishedWeights, path: Path, *, progress: bool = True) -> None:
    """Download ``row``'s file to ``path`` with torch.hub, which writes a temporary file beside it,
    checks the hash prefix and only then moves it into place (a failed or interrupted download
    leaves nothing behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"downloading torchvision's {row.model} weights ({row.size_mb:.0f} MB) from {row.address} "
              f"to {path}", file=sys.stderr)
    try:
        torch.hub.download_url_to_file(row.address, str(path), hash_prefix=row.hash_prefix, progress=progress)
    except RuntimeError as err:  # torch.hub's hash check: the download is deleted
        if "invalid hash value" not in str(err):
            raise
        raise UserError(f"the file downloaded from {row.address} does not match the published SHA-256 "
                        f"prefix {row.hash_prefix} ({err}); it was not kept") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise UserError(f"cannot download {row.address} ({reason}). On a machine without internet, "
                        f"fetch that file elsewhere and put it at {path} (or give its path: "
                        f"--weights PATH)") from None


def weights_preprocessing(weights: Optional[WeightsArg], model_name: str) -> Optional[Preprocessing]:
    """How the weights expect images (size, resize, mean and std per channel in [0, 1] pixel units),
    or None when they do not say: no weights, or a plain state dict.

    A published name gives its table row (EfficientNet-Lite0..2: their packages'); Keras' weights
    (the name or a ``.h5`` file) their family's Keras mode at 224 px; a cnnzoo checkpoint of an image
    model its own (the one it was trained with); a local copy of torchvision's file (recognised by
    its file name) the same as the name would. Reads a local file (weights only) to find out.
    """
    if weights is None:
        return None
    if is_keras_weights(weights):
        return keras_preprocessing(model_name)
    if is_weight_name(weights):
        if has_lite_weights(model_name):
            return lite_weights(model_name).preprocessing()
        return published_weights(model_name).preprocessing()
    path = Path(os.fspath(weights)).expanduser()
    row = TORCHVISION_WEIGHTS.get(model_name)
    if row is not None and path.name == row.file_name:
        return row.preprocessing()
    obj = read_weights_file(path, error=ModelError)
    if isinstance(obj, Checkpoint) and isinstance(obj.fields, ImageFields):
        return obj.fields.preprocessing
    return None
