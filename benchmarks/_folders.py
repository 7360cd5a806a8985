"""A generated image folder for benchmarks run without one of the user's own."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_jpeg_folder(root: Path, classes: int = 5, per_class: int = 60, size: tuple[int, int] = (500, 375)) -> Path:
    """``root/class<k>/<i>.jpg``: smooth random JPEGs of ``size`` (most flower photos are 320x240 to 500x375)."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
            Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(root / f"class{c}" / f"{i}.jpg")
    return root
