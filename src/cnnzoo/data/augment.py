"""Augmentations applied to a whole batch at once: per-sample randomness, no per-image Python.

Each augmentation takes a batch ``x`` ``[B, C, H, W]`` (uint8 or float, 0..255) and a
``torch.Generator`` and returns a batch of the same shape. Random numbers are always drawn on the
CPU from that generator, so a batch is the same on every device for the same ``(seed, epoch)``.
Presets are plain lists of these steps (see :data:`AUGMENT_PRESETS`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cnnzoo.data.splits import DataError


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64) * (high - low) + low


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    p: float = 0.5

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        chosen = torch.nonzero(torch.rand(len(x), generator=gen) < self.p).flatten()
        if x.device.type == "cpu":  # numpy copies whole rows at a time: several times faster here
            out = x.numpy().copy()
            picked = chosen.numpy()
            out[picked] = out[picked, :, :, ::-1]
            return torch.from_numpy(out)
        chosen = chosen.to(x.device)
        return x.index_copy(0, chosen, x.index_select(0, chosen).flip(-1))


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect out-of-range indices back into [0, size) the way ``F.pad(mode='reflect')`` does."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


@dataclass(frozen=True)
class PadCrop:
    """Pad by ``pad_fraction`` of the side (reflected), then take a random crop of the original size.

    This is the shift of the classic CIFAR recipe (4 px on 32 px). It works on uint8 and costs one
    copy of the batch: on the CPU, a strided view holds every possible window of the padded batch and
    one fancy index picks each sample's; elsewhere, one gather with per-sample row and column indices.
    Both give the same result for the same generator.
    """

    pad_fraction: float = 1 / 8

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        pad = max(1, round(min(h, w) * self.pad_fraction))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)  # offset of the crop in the padded image
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        if x.device.type == "cpu":
            return torch.from_numpy(_crop_windows(x.numpy(), pad, dy.numpy(), dx.numpy()))
        return _crop_gather(x, pad, dy.to(x.device), dx.to(x.device))


def _crop_windows(x: np.ndarray, pad: int, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    b, c, h, w = x.shape
    padded = _reflect_pad(x, pad)
    sb, sc, sh, sw = padded.strides
    windows = np.lib.stride_tricks.as_strided(  # [B, dy, dx, C, H, W]: a view, nothing copied
        padded, (b, 2 * pad + 1, 2 * pad + 1, c, h, w), (sb, sh, sw, sc, sh, sw), writeable=False)
    return windows[np.arange(b), dy, dx]


def _reflect_pad(x: np.ndarray, pad: int) -> np.ndarray:
    """``np.pad(x, pad, mode="reflect")`` on the last two axes, by slices (np.pad is 2-4x slower here)."""
    b, c, h, w = x.shape
    out = np.empty((b, c, h + 2 * pad, w + 2 * pad), x.dtype)
    out[:, :, pad:pad + h, pad:pad + w] = x
    out[:, :, pad:pad + h, :pad] = x[:, :, :, pad:0:-1]
    right_stop = w - 2 - pad if w - 2 - pad >= 0 else None  # -1 would mean 'the end', not 'before 0'
    out[:, :, pad:pad + h, pad + w:] = x[:, :, :, w - 2:right_stop:-1]
    out[:, :, :pad] = out[:, :, 2 * pad:pad:-1]  # top and bottom from the already padded rows
    out[:, :, pad + h:] = out[:, :, pad + h - 2:h - 2:-1]
    return out


def _crop_gather(x: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    rows = _reflect(torch.arange(h, device=x.device) + dy[:, None] - pad, h)  # [B, H]
    cols = _reflect(torch.arange(w, device=x.device) + dx[:, None] - pad, w)  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indexing on dims 0, 2, 3 puts the channel dim last: [B, H, W, C].
    return x[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class RandomResizedCrop:
    """Crop a random box (``scale`` of the area, aspect ``ratio``) and resize it to the full size.

    All boxes are sampled at once and applied with one ``grid_sample`` (bilinear) over a per-sample
    sampling grid. Unlike torchvision, which retries up to 10 times for a box that fits,
    a box wider or taller than the image is clamped to the image side: same scale range, a single draw.
    Returns float (0..255).
    """

    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b = len(x)
        area = _uniform(b, *self.scale, gen)
        log_ratio = _uniform(b, math.log(self.ratio[0]), math.log(self.ratio[1]), gen)
        ratio = torch.exp(log_ratio)
        box_w = torch.sqrt(area * ratio).clamp(max=1.0)  # fractions of the image side
        box_h = torch.sqrt(area / ratio).clamp(max=1.0)
        # Centre anywhere that keeps the box inside the image; in grid units [-1, 1].
        cx = (torch.rand(b, generator=gen, dtype=torch.float64) * 2 - 1) * (1 - box_w)
        cy = (torch.rand(b, generator=gen, dtype=torch.float64) * 2 - 1) * (1 - box_h)
        x = x.float()
        grid = _box_grid(box_w, box_h, cx, cy, x.shape[-2], x.shape[-1]).to(x.device)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _box_grid(box_w, box_h, cx, cy, h: int, w: int) -> torch.Tensor:
    """The sampling grid of axis-aligned boxes, as ``F.affine_grid`` would make it, built separably.

    (affine_grid multiplies a [B, H*W, 3] base grid by each matrix: ten times slower here.)
    """
    u = (torch.arange(w, dtype=torch.float64) * 2 + 1) / w - 1  # pixel centres in [-1, 1]
    v = (torch.arange(h, dtype=torch.float64) * 2 + 1) / h - 1
    gx = (box_w[:, None] * u + cx[:, None]).float()  # [B, W]
    gy = (box_h[:, None] * v + cy[:, None]).float()  # [B, H]
    b = len(gx)
    return torch.stack([gx[:, None, :].expand(b, h, w), gy[:, :, None].expand(b, h, w)], dim=-1)


# Named recipes: none = evaluation; light = the CIFAR shift + flip; standard = ImageNet-style
# random-resized crop (scale 0.35-1, milder than ImageNet's 0.08 because images here are small) + flip.
AUGMENT_PRESETS: dict[str, list] = {
    "none": [],
    "light": [PadCrop(pad_fraction=1 / 8), HorizontalFlip()],
    "standard": [HorizontalFlip(), RandomResizedCrop(scale=(0.35, 1.0))],  # flip first: cheaper on uint8
}


def resolve_augment(augment) -> list:
    """A preset name, or a list of augmentation steps, -> the list of steps."""
    if isinstance(augment, str):
        if augment not in AUGMENT_PRESETS:
            raise DataError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENT_PRESETS)}")
        return list(AUGMENT_PRESETS[augment])
    if augment is None:
        return []
    return list(augment)


def apply_augment(steps: list, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    for step in steps:
        x = step(x, gen)
    return x
