"""Sources that need no download: scikit-learn's handwritten digits and a generated synthetic set.

Both are small enough to live in memory, so they are built on every call and never cached.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cnnzoo.data.splits import DataError, DataSplits, ImageSet, channel_stats, stratified_split

DIGITS_DEFAULT_SIZE = 32
SYNTHETIC_DEFAULTS = {"classes": 4, "n": 512, "size": 32}


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of uint8 ``[N, C, h, w]`` to ``[N, C, size, size]`` (antialiased when shrinking)."""
    if images.shape[-2:] == (size, size):
        return images
    x = torch.from_numpy(images).float()
    shrinking = size < max(images.shape[-2:])
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)
    return x.round_().clamp_(0, 255).to(torch.uint8).numpy()


def _make_splits(images, labels, class_names, image_size, val_fraction, seed, source) -> DataSplits:
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    train = ImageSet(images[train_idx], labels[train_idx])
    val = ImageSet(images[val_idx], labels[val_idx]) if len(val_idx) else None
    mean, std = channel_stats(train.images)
    return DataSplits(train=train, val=val, test=None, class_names=class_names, image_size=image_size,
                      mean=mean, std=std, source=source)


def load_digits(image_size=None, val_fraction=0.2, seed=0) -> DataSplits:
    """scikit-learn's 1797 handwritten digits (8x8, 0..16 grey), scaled to 0..255, upscaled, as RGB."""
    from sklearn.datasets import load_digits as sklearn_digits  # imported here: sklearn is slow to import

    size = image_size or DIGITS_DEFAULT_SIZE
    digits = sklearn_digits()
    grey = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # [N, 1, 8, 8]
    images = np.ascontiguousarray(np.repeat(resize_batch(grey, size), 3, axis=1))
    labels = digits.target.astype(np.int64)
    names = [str(d) for d in digits.target_names]
    return _make_splits(images, labels, names, size, val_fraction, seed, "digits")


def parse_synthetic_spec(spec: str) -> dict:
    """``"synthetic"`` or ``"synthetic:classes=4,n=256,size=32"`` -> ``{"classes": 4, "n": 256, "size": 32}``."""
    options = dict(SYNTHETIC_DEFAULTS)
    _, _, rest = spec.partition(":")
    for item in filter(None, (t.strip() for t in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in options:
            raise DataError(f"bad synthetic dataset option {item!r} in {spec!r}; "
                            f"expected e.g. 'synthetic:classes=4,n=256,size=32' (keys: {', '.join(options)})")
        try:
            options[key] = int(value)
        except ValueError:
            raise DataError(f"synthetic dataset option {key} must be an integer, got {value!r}") from None
    if options["classes"] < 2 or options["n"] < 2 * options["classes"] or options["size"] < 4:
        raise DataError(f"synthetic dataset needs classes >= 2, n >= 2 x classes and size >= 4; got {options}")
    return options


def make_synthetic_images(classes: int, n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of ``classes`` kinds: each class a tint and a grating at its own angle, plus noise.

    Learnable by a small CNN in a few steps (colour and orientation both tell the class), yet not
    trivially separable pixel by pixel: phase, contrast and brightness vary per image.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    k = labels[:, None, None, None] / classes
    tint = 0.5 + 0.35 * np.cos(2 * np.pi * (k + np.array([0, 1, 2]).reshape(1, 3, 1, 1) / 3))
    angle = np.pi * k
    yy, xx = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1, 1))
    grating = np.sin(2 * np.pi * 3 * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    contrast = rng.uniform(0.15, 0.3, (n, 1, 1, 1))
    brightness = rng.uniform(-0.1, 0.1, (n, 1, 1, 1))
    noise = rng.normal(0, 0.05, (n, 3, size, size))
    pixels = (tint + contrast * grating + brightness + noise).clip(0, 1)
    return np.round(pixels * 255).astype(np.uint8), labels.astype(np.int64)


def load_synthetic(spec="synthetic", image_size=None, val_fraction=0.2, seed=0) -> DataSplits:
    """The generated dataset described by ``spec`` (see :func:`parse_synthetic_spec`); ``seed`` picks the images."""
    options = parse_synthetic_spec(spec)
    if image_size is not None and ":" in spec and "size=" in spec and image_size != options["size"]:
        raise DataError(f"--image-size {image_size} contradicts size={options['size']} in {spec!r}; give one")
    size = image_size or options["size"]
    images, labels = make_synthetic_images(options["classes"], options["n"], size, seed)
    names = [f"class{i}" for i in range(options["classes"])]
    source = f"synthetic:classes={options['classes']},n={options['n']},size={size}"
    return _make_splits(images, labels, names, size, val_fraction, seed, source)
