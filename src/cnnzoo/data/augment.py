"""Augmentations applied to a whole batch at once: per-sample randomness, no per-image Python.

Each augmentation takes a batch ``x`` ``[B, C, H, W]`` (uint8 or float, 0..255) and a
``torch.Generator`` and returns a batch of the same shape. Random numbers are always drawn on the
CPU from that generator, so a batch is the same on every device for the same ``(seed, epoch)``.
Presets are plain lists of these steps (see :data:`AUGMENT_PRESETS`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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
        flip = (torch.rand(len(x), generator=gen) < self.p).to(x.device)
        return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect out-of-range indices back into [0, size) the way ``F.pad(mode='reflect')`` does."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


@dataclass(frozen=True)
class PadCrop:
    """Pad by ``pad_fraction`` of the side (reflected), then take a random crop of the original size.

    This is the shift of the classic CIFAR recipe (4 px on 32 px). It is done as one gather with
    per-sample row and column indices, straight from the unpadded batch, so it works on uint8.
    """

    pad_fraction: float = 1 / 8

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        pad = max(1, round(min(h, w) * self.pad_fraction))
        dy = torch.randint(-pad, pad + 1, (b, 1), generator=gen)
        dx = torch.randint(-pad, pad + 1, (b, 1), generator=gen)
        rows = _reflect(torch.arange(h) + dy, h).to(x.device)  # [B, H]
        cols = _reflect(torch.arange(w) + dx, w).to(x.device)  # [B, W]
        batch = torch.arange(b, device=x.device)[:, None, None]
        # Advanced indexing on dims 0, 2, 3 puts the channel dim last: [B, H, W, C].
        out = x[batch, :, rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class RandomResizedCrop:
    """Crop a random box (``scale`` of the area, aspect ``ratio``) and resize it to the full size.

    All boxes are sampled at once and applied with one ``grid_sample`` (bilinear) using a
    per-sample affine matrix. Unlike torchvision, which retries up to 10 times for a box that fits,
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
        theta = torch.zeros(b, 2, 3, dtype=torch.float64)
        theta[:, 0, 0], theta[:, 0, 2] = box_w, cx
        theta[:, 1, 1], theta[:, 1, 2] = box_h, cy
        x = x.float()
        grid = F.affine_grid(theta.to(x.device, torch.float32), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# Named recipes: none = evaluation; light = the CIFAR shift + flip; standard = ImageNet-style
# random-resized crop (scale 0.35-1, milder than ImageNet's 0.08 because images here are small) + flip.
AUGMENT_PRESETS: dict[str, list] = {
    "none": [],
    "light": [PadCrop(pad_fraction=1 / 8), HorizontalFlip()],
    "standard": [RandomResizedCrop(scale=(0.35, 1.0)), HorizontalFlip()],
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
