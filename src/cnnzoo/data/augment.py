"""Augmentations applied to a whole batch at once: per-sample randomness, no per-image Python.

Each augmentation takes a batch ``x`` ``[B, C, H, W]`` (uint8 or float, 0..255) and a
``torch.Generator`` and returns a batch of the same shape. Random numbers are always drawn on the
CPU from that generator, so a batch is the same on every device for the same ``(seed, epoch)``.
Presets are plain lists of these steps (see :data:`AUGMENT_PRESETS` and :data:`POLICY_PRESETS`).

Steps: moving pixels (flip, pad-and-crop, random-resized crop), policies that draw one op per
image and transform the images that drew the same op together (TrivialAugment, RandAugment),
random erasing, and the resize of progressive resizing (:class:`Downscale`, :func:`progressive_size`).
Mixup and CutMix change the labels too, so they live with the loss (``cnnzoo.training.mixing``).
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


# --- Policies: one op per image, drawn per image, the images that drew an op transformed together ---

def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_blend``: ``factor * x + (1 - factor) * other`` clamped to 0..255, per image."""
    f = factor.view(-1, 1, 1, 1).to(x)
    return (f * x + (1 - f) * other).clamp_(0, 255)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma with torchvision's (ITU-R 601) weights, ``[B, 1, H, W]``."""
    if x.shape[1] == 1:
        return x
    return 0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _brightness(x, m):
    return _blend(x, torch.zeros_like(x), 1 + m)


def _color(x, m):
    return _blend(x, _grayscale(x), 1 + m)


def _contrast(x, m):
    return _blend(x, _grayscale(x).mean(dim=(1, 2, 3), keepdim=True), 1 + m)


def _sharpness(x, m):
    """Blend with torchvision's smoothing (3x3, centre weight 5), whose border pixels stay unblurred.
    The 3x3 sum is two shifted-slice sums (separable): a grouped conv2d is many times slower on CPU."""
    if x.shape[-1] <= 2 or x.shape[-2] <= 2:
        return x
    rows = x[..., :, :-2] + x[..., :, 1:-1] + x[..., :, 2:]
    box = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]
    blurred = x.clone()
    blurred[..., 1:-1, 1:-1] = (box + 4 * x[..., 1:-1, 1:-1]) / 13
    return _blend(x, blurred, 1 + m)


def _posterize(x, bits):
    step = (2.0 ** (8 - bits)).view(-1, 1, 1, 1).to(x)
    return torch.floor(x.floor() / step) * step


def _solarize(x, threshold):
    return torch.where(x >= threshold.view(-1, 1, 1, 1).to(x), 255 - x, x)


def _autocontrast(x, _m):
    low = x.amin(dim=(-2, -1), keepdim=True)
    high = x.amax(dim=(-2, -1), keepdim=True)
    flat = high <= low  # a constant channel stays as it is, as in torchvision
    scale = torch.where(flat, torch.ones_like(high), 255 / (high - low).clamp(min=1e-6))
    return ((x - torch.where(flat, torch.zeros_like(low), low)) * scale).clamp_(0, 255)


def _equalize(x, _m):
    """torchvision's ``equalize`` (PIL's rule) for every image and channel at once: one histogram row each."""
    b, c, h, w = x.shape
    values = x.floor().clamp_(0, 255).long().reshape(b * c, h * w)
    hist = torch.zeros(b * c, 256, dtype=torch.long, device=x.device).scatter_add_(
        1, values, torch.ones_like(values))
    # step = (pixels minus those of the highest occupied level) // 255, as PIL and torchvision do.
    last = torch.where(hist > 0, torch.arange(256, device=x.device), -1).amax(1, keepdim=True)
    step = (h * w - hist.gather(1, last)) // 255
    lut = (hist.cumsum(1) + step // 2) // step.clamp(min=1)
    lut = F.pad(lut, (1, 0))[:, :-1].clamp(0, 255)
    out = lut.gather(1, values).reshape(b, c, h, w).to(x.dtype)
    return torch.where((step == 0).view(b, c, 1, 1), x, out)


def _identity(x, _m):
    return x


def _warp(x: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour warp with zero fill (torchvision's defaults for these policies).

    ``inverse`` ``[N, 2, 3]`` maps output pixel coordinates (x right, y down, origin at the image
    centre, in pixels) to input ones; converted here to ``affine_grid``'s normalised coordinates.
    """
    h, w = x.shape[-2:]
    theta = inverse.clone()
    theta[:, 0, 1] *= h / w
    theta[:, 1, 0] *= w / h
    theta[:, 0, 2] *= 2 / w
    theta[:, 1, 2] *= 2 / h
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _affine(n: int) -> torch.Tensor:
    return torch.eye(2, 3, dtype=torch.float64).repeat(n, 1, 1)


def _shear_x(x, m):
    # About the top-left corner, as torchvision's policies shear (center=[0, 0]).
    inv = _affine(len(x))
    inv[:, 0, 1] = m
    inv[:, 0, 2] = m * x.shape[-2] / 2
    return _warp(x, inv)


def _shear_y(x, m):
    inv = _affine(len(x))
    inv[:, 1, 0] = m
    inv[:, 1, 2] = m * x.shape[-1] / 2
    return _warp(x, inv)


def _translate_x(x, m):
    inv = _affine(len(x))
    inv[:, 0, 2] = -torch.trunc(m)  # whole pixels, as torchvision's int(magnitude)
    return _warp(x, inv)


def _translate_y(x, m):
    inv = _affine(len(x))
    inv[:, 1, 2] = -torch.trunc(m)
    return _warp(x, inv)


def _rotate(x, degrees):
    a = torch.deg2rad(degrees)
    inv = _affine(len(x))
    inv[:, 0, 0], inv[:, 0, 1] = torch.cos(a), -torch.sin(a)
    inv[:, 1, 0], inv[:, 1, 1] = torch.sin(a), torch.cos(a)
    return _warp(x, inv)


# name: (function, signed). The functions take the images that drew the op and their magnitudes.
_OPS = {
    "Identity": (_identity, False), "ShearX": (_shear_x, True), "ShearY": (_shear_y, True),
    "TranslateX": (_translate_x, True), "TranslateY": (_translate_y, True), "Rotate": (_rotate, True),
    "Brightness": (_brightness, True), "Color": (_color, True), "Contrast": (_contrast, True),
    "Sharpness": (_sharpness, True), "Posterize": (_posterize, False), "Solarize": (_solarize, False),
    "AutoContrast": (_autocontrast, False), "Equalize": (_equalize, False),
}


def trivial_augment_space(num_bins: int, image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Magnitude bins per op: torchvision 0.29's ``TrivialAugmentWide._augmentation_space``."""
    del image_size  # the wide space translates by up to 32 px whatever the size, as the paper does
    return {
        "Identity": torch.zeros(1), "ShearX": torch.linspace(0.0, 0.99, num_bins),
        "ShearY": torch.linspace(0.0, 0.99, num_bins), "TranslateX": torch.linspace(0.0, 32.0, num_bins),
        "TranslateY": torch.linspace(0.0, 32.0, num_bins), "Rotate": torch.linspace(0.0, 135.0, num_bins),
        "Brightness": torch.linspace(0.0, 0.99, num_bins), "Color": torch.linspace(0.0, 0.99, num_bins),
        "Contrast": torch.linspace(0.0, 0.99, num_bins), "Sharpness": torch.linspace(0.0, 0.99, num_bins),
        "Posterize": 8 - (torch.arange(num_bins) / ((num_bins - 1) / 6)).round(),
        "Solarize": torch.linspace(255.0, 0.0, num_bins), "AutoContrast": torch.zeros(1),
        "Equalize": torch.zeros(1),
    }


def rand_augment_space(num_bins: int, image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Magnitude bins per op: torchvision 0.29's ``RandAugment._augmentation_space``."""
    h, w = image_size
    return {
        "Identity": torch.zeros(1), "ShearX": torch.linspace(0.0, 0.3, num_bins),
        "ShearY": torch.linspace(0.0, 0.3, num_bins), "TranslateX": torch.linspace(0.0, 150.0 / 331.0 * w, num_bins),
        "TranslateY": torch.linspace(0.0, 150.0 / 331.0 * h, num_bins), "Rotate": torch.linspace(0.0, 30.0, num_bins),
        "Brightness": torch.linspace(0.0, 0.9, num_bins), "Color": torch.linspace(0.0, 0.9, num_bins),
        "Contrast": torch.linspace(0.0, 0.9, num_bins), "Sharpness": torch.linspace(0.0, 0.9, num_bins),
        "Posterize": 8 - (torch.arange(num_bins) / ((num_bins - 1) / 4)).round(),
        "Solarize": torch.linspace(255.0, 0.0, num_bins), "AutoContrast": torch.zeros(1),
        "Equalize": torch.zeros(1),
    }


def _apply_ops(x: torch.Tensor, op_ids: torch.Tensor, magnitudes: torch.Tensor, *, copy: bool = True) -> torch.Tensor:
    """Apply op ``op_ids[i]`` (an index into ``_OPS``) with ``magnitudes[i]`` to image ``i``: one call
    per op. ``copy=False``: ``x`` is float and ours to overwrite (RandAugment's later rounds)."""
    if x.dtype != torch.float32:
        out = x.float()  # a copy already
    else:
        out = x.clone() if copy else x
    for k, (fn, _) in enumerate(_OPS.values()):
        chosen = torch.nonzero(op_ids == k).flatten()
        if len(chosen) == 0 or k == 0:
            continue
        on = chosen.to(out.device)
        out.index_copy_(0, on, fn(out.index_select(0, on), magnitudes[chosen]))
    return out


def _draw_signs(magnitudes: torch.Tensor, op_ids: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    negative = torch.randint(0, 2, (len(op_ids),), generator=gen) == 1
    signed = torch.tensor([s for _, s in _OPS.values()])[op_ids]
    return torch.where(signed & negative, -magnitudes, magnitudes)


@dataclass(frozen=True)
class TrivialAugmentWide:
    """TrivialAugment (Müller & Hutter 2021), torchvision's wide space: per image, one op of the 14
    and one magnitude bin of ``num_magnitude_bins``, both uniform, and a random sign where the op has one.

    Each op equals torchvision 0.29's functional op on uint8 images (tests/test_augment_policies.py)
    but for one deliberate difference: values stay float (no cast to uint8 after each op; posterize
    and equalize floor first), so colour ops differ by about one grey level where torchvision
    truncates. Geometric ops are one ``affine_grid``/``grid_sample`` (nearest, zero fill: torchvision's
    defaults for these policies) per op over the images that drew it. Random numbers: the op, the
    bin and the sign of every image, drawn whether used or not, so the stream does not depend on
    the pixels. Returns float 0..255.
    """

    num_magnitude_bins: int = 31

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b = len(x)
        space = trivial_augment_space(self.num_magnitude_bins, (x.shape[-2], x.shape[-1]))
        op_ids = torch.randint(0, len(space), (b,), generator=gen)
        bins = torch.randint(0, self.num_magnitude_bins, (b,), generator=gen)
        table = torch.stack([v.expand(self.num_magnitude_bins) if v.numel() == 1 else v
                             for v in space.values()]).double()
        magnitudes = _draw_signs(table[op_ids, bins], op_ids, gen)
        return _apply_ops(x, op_ids, magnitudes)


@dataclass(frozen=True)
class RandAugment:
    """RandAugment (Cubuk et al. 2020) as torchvision 0.29 defines it: ``num_ops`` rounds, each a
    uniform op of the 14 per image at the fixed ``magnitude`` bin (of ``num_magnitude_bins``), with a
    random sign where the op has one. Same differences from torchvision as :class:`TrivialAugmentWide`.
    """

    num_ops: int = 2
    magnitude: int = 9
    num_magnitude_bins: int = 31

    def __post_init__(self):
        if not 0 <= self.magnitude < self.num_magnitude_bins:
            raise DataError(f"RandAugment magnitude {self.magnitude} is outside 0..{self.num_magnitude_bins - 1}")

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        space = rand_augment_space(self.num_magnitude_bins, (x.shape[-2], x.shape[-1]))
        fixed = torch.tensor([float(v[self.magnitude if v.numel() > 1 else 0]) for v in space.values()],
                             dtype=torch.float64)
        for round_ in range(self.num_ops):
            op_ids = torch.randint(0, len(space), (len(x),), generator=gen)
            x = _apply_ops(x, op_ids, _draw_signs(fixed[op_ids], op_ids, gen), copy=round_ == 0)
        return x


@dataclass(frozen=True)
class RandomErasing:
    """Erase one random box per image with probability ``p`` (Zhong et al. 2017), as torchvision's
    ``RandomErasing``: box area ``scale`` of the image, aspect ratio log-uniform in ``ratio``.

    ``value``: a fill (0..255) or ``"random"``, per-pixel uniform noise over 0..255 (timm's
    ``mode='pixel'`` fills with normal noise in normalised units; this step runs before
    normalisation, so uniform noise of about a photo's pixel spread stands in for it). Unlike
    torchvision's ten retries for a box that fits, a side longer than the image is clamped to it.
    Returns float 0..255.
    """

    p: float = 0.25
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float | str = "random"

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        erase = torch.rand(b, generator=gen) < self.p
        area = _uniform(b, *self.scale, gen) * h * w
        ratio = torch.exp(_uniform(b, math.log(self.ratio[0]), math.log(self.ratio[1]), gen))
        box_h = torch.sqrt(area * ratio).round().clamp(1, h).long()
        box_w = torch.sqrt(area / ratio).round().clamp(1, w).long()
        top = (torch.rand(b, generator=gen, dtype=torch.float64) * (h - box_h + 1)).floor().long()
        left = (torch.rand(b, generator=gen, dtype=torch.float64) * (w - box_w + 1)).floor().long()
        rows = torch.arange(h)
        cols = torch.arange(w)
        inside_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])  # [B, H]
        inside_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])  # [B, W]
        mask = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]  # [B, 1, H, W]
        chosen = torch.nonzero(erase).flatten()
        x = x.float() if x.dtype != torch.float32 else x.clone()
        if self.value == "random":  # noise for the erased images only: the same draws for the same state
            fill = (torch.rand(len(chosen), c, h, w, generator=gen) * 255).to(x.device)
        else:
            fill = torch.tensor(float(self.value), device=x.device)
        on = chosen.to(x.device)
        x.index_copy_(0, on, torch.where(mask[chosen].to(x.device), fill, x.index_select(0, on)))
        return x


@dataclass(frozen=True)
class Downscale:
    """Resize the batch to ``size`` x ``size`` (bilinear, antialiased when shrinking): the low
    resolution of progressive resizing's early epochs. Put it last, after the crops. Returns float."""

    size: int

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        del gen  # no randomness: the same draws for every size, so a resumed epoch is the same
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        return F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", align_corners=False,
                             antialias=self.size < min(x.shape[-2:]))


def progressive_size(epoch: int, epochs: int, final_size: int, *, start_fraction: float = 0.5,
                     final_epochs: float = 0.25, multiple: int = 16, min_size: int = 32) -> int:
    """The training image side for ``epoch`` (0-based) of ``epochs`` under progressive resizing.

    Rises linearly from ``start_fraction * final_size`` at the first epoch to ``final_size``, which
    the last ``final_epochs`` share of the epochs (at least one) train at, so the model ends at the
    size it is evaluated at (Touvron et al. 2019, "FixRes": a train/test size mismatch costs accuracy).
    Sizes are rounded down to ``multiple`` (whole feature maps after the strides) and kept at least
    ``min_size``. A function of the epoch only, so resuming gives the same sizes.
    """
    final_from = max(0, min(epochs - 1, round(epochs * (1 - final_epochs))))
    if epoch >= final_from or final_from == 0:
        return final_size
    start = start_fraction * final_size
    size = start + (final_size - start) * epoch / final_from
    return max(min_size, min(final_size, int(size // multiple * multiple)))


# Named recipes: none = evaluation; light = the CIFAR shift + flip; standard = ImageNet-style
# random-resized crop (scale 0.35-1, milder than ImageNet's 0.08 because images here are small) + flip.
# These move pixels and never change their values.
AUGMENT_PRESETS: dict[str, list] = {
    "none": [],
    "light": [PadCrop(pad_fraction=1 / 8), HorizontalFlip()],
    "standard": [HorizontalFlip(), RandomResizedCrop(scale=(0.35, 1.0))],  # flip first: cheaper on uint8
}

# Presets that also change pixel values (colour ops, erasing): a geometric preset plus a policy.
# "standard-trivial-erase" is torchvision's classification reference recipe (TrivialAugment wide,
# random erasing 0.1); "standard-randaug-erase" timm's (RandAugment m9, erasing 0.25); the "light-"
# ones the TrivialAugment paper's CIFAR setting (crop, flip, TA; the paper adds cutout).
POLICY_PRESETS: dict[str, list] = {
    "light-trivial": [*AUGMENT_PRESETS["light"], TrivialAugmentWide()],
    "light-trivial-erase": [*AUGMENT_PRESETS["light"], TrivialAugmentWide(), RandomErasing(p=0.1)],
    "standard-trivial": [HorizontalFlip(), TrivialAugmentWide(), RandomResizedCrop(scale=(0.35, 1.0))],
    "standard-trivial-erase": [HorizontalFlip(), TrivialAugmentWide(), RandomResizedCrop(scale=(0.35, 1.0)),
                               RandomErasing(p=0.1)],
    "standard-randaug-erase": [HorizontalFlip(), RandAugment(num_ops=2, magnitude=9),
                               RandomResizedCrop(scale=(0.35, 1.0)), RandomErasing(p=0.25)],
}

AUGMENT_CHOICES: tuple[str, ...] = (*AUGMENT_PRESETS, *POLICY_PRESETS)


def resolve_augment(augment) -> list:
    """A preset name (:data:`AUGMENT_CHOICES`), or a list of augmentation steps, -> the list of steps."""
    if isinstance(augment, str):
        presets = {**AUGMENT_PRESETS, **POLICY_PRESETS}
        if augment not in presets:
            raise DataError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENT_CHOICES)}")
        return list(presets[augment])
    if augment is None:
        return []
    return list(augment)


def apply_augment(steps: list, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    for step in steps:
        x = step(x, gen)
    return x
