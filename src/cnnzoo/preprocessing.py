"""How an image is fed to a model: its size, how it is resized, the channel order and the normalisation.

One record, :class:`Preprocessing`, is what a checkpoint stores, what published weights declare,
and what every module that feeds a model applies (training's loaders, evaluate, predict, features,
export): mean and std are on pixels scaled to [0, 1], per channel in the order the model takes
them. That covers the input conventions Keras' applications use (:meth:`Preprocessing.keras`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from cnnzoo.errors import UserError

# How an image of another size is brought to ``image_size``: "shorter_crop" resizes the shorter side
# to it and crops the centre, "stretch" resizes both sides, "pad" fits the longer side and pads.
RESIZE_MODES = ("shorter_crop", "stretch", "pad")
CHANNEL_ORDERS = ("rgb", "bgr")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Keras' "caffe" mode: BGR, the ImageNet mean subtracted per channel in 0-255 units, no scaling.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
KERAS_MODES = ("tf", "caffe", "torch")


@dataclass(frozen=True)
class Preprocessing:
    """``x = (pixels / 255 in channel_order - mean) / std``, after resizing to ``image_size``.

    ``mean`` and ``std`` are per channel, on pixels in [0, 1], in the order the model takes them
    (B, G, R for ``channel_order="bgr"``). Images are decoded as RGB (or grey); "bgr" reverses the
    channels before normalising.
    """

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str = "shorter_crop"
    channel_order: str = "rgb"

    def __post_init__(self):
        # tuples of plain floats whatever was given (lists from a file, numpy or torch scalars)
        object.__setattr__(self, "image_size", int(self.image_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != len(self.std) or not self.mean:
            raise UserError(f"preprocessing needs one mean and one std per channel, got {len(self.mean)} "
                            f"mean(s) and {len(self.std)} std(s)")
        if self.resize not in RESIZE_MODES:
            raise UserError(f"unknown resize mode {self.resize!r}; choose one of {', '.join(RESIZE_MODES)}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise UserError(f"unknown channel order {self.channel_order!r}; choose one of "
                            f"{', '.join(CHANNEL_ORDERS)}")

    @classmethod
    def keras(cls, mode: str, image_size: int) -> "Preprocessing":
        """Keras' ``preprocess_input(mode=...)`` as a record: "tf" scales to [-1, 1], "caffe" takes
        BGR and subtracts the ImageNet mean in 0-255 units, "torch" is ImageNet's mean and std."""
        if mode == "tf":
            return cls(image_size, (0.5,) * 3, (0.5,) * 3)
        if mode == "caffe":
            return cls(image_size, tuple(v / 255 for v in CAFFE_MEAN_BGR), (1 / 255,) * 3, channel_order="bgr")
        if mode == "torch":
            return cls(image_size, IMAGENET_MEAN, IMAGENET_STD)
        raise UserError(f"unknown Keras preprocessing mode {mode!r}; choose one of {', '.join(KERAS_MODES)}")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def for_channels(self, channels: int) -> "Preprocessing":
        """The same record for a model taking ``channels`` inputs: RGB statistics become their average
        on each channel (RGB weights adapted to grey or multi-band inputs)."""
        if channels == self.channels:
            return self
        mean, std = sum(self.mean) / self.channels, sum(self.std) / self.channels
        return Preprocessing(self.image_size, (mean,) * channels, (std,) * channels, self.resize, "rgb")

    def order_channels(self, x: torch.Tensor) -> torch.Tensor:
        """RGB ``[N, C, H, W]`` in the model's channel order."""
        return x.flip(1) if self.channel_order == "bgr" else x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """A float RGB batch ``[N, C, H, W]`` with values in [0, 1] as the model takes it:
        channels in its order, then ``(x - mean) / std``."""
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (self.order_channels(x) - mean) / std

    def to_dict(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "resize": self.resize, "channel_order": self.channel_order}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Preprocessing":
        """From :meth:`to_dict`'s output, or a version-1 checkpoint's ``{"image_size", "mean", "std",
        "resize"}`` (RGB; "resize" absent before resize modes: "shorter_crop")."""
        return cls(image_size=values["image_size"], mean=tuple(values["mean"]), std=tuple(values["std"]),
                   resize=values.get("resize", "shorter_crop"), channel_order=values.get("channel_order", "rgb"))

