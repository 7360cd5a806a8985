"""Decode one image file with Pillow into uint8 ``[3, size, size]``: the only per-image work we do, once."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

# Lower-case suffixes we try to decode; any other file in a class folder is ignored.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                              ".ppm", ".pgm", ".pbm"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB. Transparent pixels go on white; 16-bit and 32-bit grey are scaled to 8 bits.

    Pillow's own ``convert`` would clip 16-bit values above 255 (an almost white image), hence the
    explicit scaling by 65535 -> 255.
    """
    if im.mode == "RGB":
        return im
    if im.mode in _HIGH_DEPTH_MODES:
        values = np.asarray(im, dtype=np.float64)
        top = 1.0 if im.mode == "F" and values.max() <= 1.0 else (255.0 if im.mode == "F" else 65535.0)
        grey = np.round(np.clip(values / top, 0, 1) * 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if im.mode in _ALPHA_MODES or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def resize_square(im: Image.Image, size: int, mode: str = "shorter_crop") -> Image.Image:
    """Resize to ``size`` x ``size`` (bilinear, antialiased when shrinking).

    ``shorter_crop``: the centred square of the shorter side, scaled (= resize shorter side, centre
    crop, done in one step with Pillow's ``box``); ``stretch``: ignore the aspect ratio; ``pad``:
    the longer side to ``size``, centred on black.
    """
    w, h = im.size
    if mode == "shorter_crop":
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        return im.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    if mode == "stretch":
        return im.resize((size, size), Image.Resampling.BILINEAR)
    if mode == "pad":
        scale = size / max(w, h)
        inner = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
        canvas = Image.new("RGB", (size, size))
        canvas.paste(inner, ((size - inner.size[0]) // 2, (size - inner.size[1]) // 2))
        return canvas
    raise ValueError(f"unknown resize mode {mode!r}")


def decode_image(path, size: int, resize: str = "shorter_crop") -> np.ndarray:
    """Read ``path`` as uint8 ``[3, size, size]``: EXIF orientation applied, any mode made RGB, resized.

    JPEGs are decoded in draft mode (DCT scaling by 1/2, 1/4 or 1/8) at the smallest scale still at
    least ``size`` on both sides, which skips most of the decoding work for large photos.
    Raises whatever Pillow raises for unreadable files; the caller decides what to do.
    """
    with Image.open(path) as im:
        im.draft(None, (size, size))  # no-op for non-JPEG files
        im = ImageOps.exif_transpose(im)
        im = resize_square(to_rgb(im), size, resize)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
