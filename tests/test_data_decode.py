"""Decoding one file: EXIF orientation, every image mode to RGB, resize modes, JPEG draft mode."""
import numpy as np
import pytest
from PIL import Image

from cnnzoo.data.decode import decode_image


def two_halves(width=40, height=20, left=(255, 0, 0), right=(0, 0, 255)):
    im = Image.new("RGB", (width, height), right)
    im.paste(left, (0, 0, width // 2, height))
    return im


def test_exif_orientation_is_honoured(tmp_path):
    # Stored landscape: red left, blue right. Orientation 6 means "rotate 90 degrees clockwise to view",
    # which brings the left half to the top (EXIF 2.32, tag 0x0112).
    exif = Image.Exif()
    exif[0x0112] = 6
    two_halves().save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    pixels = decode_image(tmp_path / "rotated.jpg", 16, "stretch").astype(int)
    assert pixels[0, 2, 8] > 200 and pixels[2, 2, 8] < 50  # top is red
    assert pixels[2, 13, 8] > 200 and pixels[0, 13, 8] < 50  # bottom is blue


@pytest.mark.parametrize("mode, value, fmt, expected", [
    ("L", 100, "PNG", (100, 100, 100)),
    ("LA", (100, 255), "PNG", (100, 100, 100)),
    ("LA", (100, 0), "PNG", (255, 255, 255)),  # fully transparent goes on white
    ("RGBA", (200, 10, 10, 255), "PNG", (200, 10, 10)),
    ("RGBA", (200, 10, 10, 0), "PNG", (255, 255, 255)),
    ("CMYK", (0, 255, 255, 0), "JPEG", (255, 0, 0)),  # no black, full magenta + yellow = red
    ("CMYK", (0, 0, 0, 255), "TIFF", (0, 0, 0)),
    ("I;16", 32896, "PNG", (128, 128, 128)),  # 16-bit grey at about half scale
    ("I", 65535, "TIFF", (255, 255, 255)),  # 32-bit integer grey, 16-bit scale (how 16-bit PNGs often open)
])
def test_every_mode_becomes_rgb(tmp_path, mode, value, fmt, expected):
    path = tmp_path / f"image.{fmt.lower()}"
    im = Image.new(mode, (12, 10), value)
    im.save(path, fmt)
    pixels = decode_image(path, 8)
    assert pixels.shape == (3, 8, 8) and pixels.dtype == np.uint8
    assert np.abs(pixels[:, 4, 4].astype(int) - np.array(expected)).max() <= 3


def test_palette_image_with_and_without_transparency(tmp_path):
    im = Image.new("P", (10, 10), 1)
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    im.save(tmp_path / "p.png")
    assert decode_image(tmp_path / "p.png", 4)[:, 2, 2].tolist() == [10, 200, 30]
    im.save(tmp_path / "p.gif", transparency=1)
    assert decode_image(tmp_path / "p.gif", 4)[:, 2, 2].tolist() == [255, 255, 255]


def test_resize_modes(tmp_path):
    two_halves(40, 20).save(tmp_path / "wide.png")
    crop = decode_image(tmp_path / "wide.png", 10, "shorter_crop")  # the centred 20 x 20: half red, half blue
    assert crop[0, 5, 1] == 255 and crop[2, 5, 8] == 255
    pad = decode_image(tmp_path / "wide.png", 10, "pad")  # 10 x 5 image, black bars above and below
    assert pad[:, 0].max() == 0 and pad[:, 9].max() == 0 and pad[0, 5, 1] == 255
    stretch = decode_image(tmp_path / "wide.png", 10, "stretch")
    assert stretch[0, 0, 1] == 255 and stretch[2, 9, 8] == 255


def test_draft_mode_matches_a_full_decode(tmp_path):
    # A large smooth JPEG: decoding at 1/8 scale then resizing should look like the full decode resized.
    y, x = np.mgrid[0:600, 0:800]
    rgb = np.stack([x * 255 // 800, y * 255 // 600, (x + y) * 255 // 1400], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "big.jpg", quality=95)
    fast = decode_image(tmp_path / "big.jpg", 32).astype(int)
    with Image.open(tmp_path / "big.jpg") as im:
        full = np.asarray(im.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR, box=(100, 0, 700, 600)))
    assert np.abs(fast - full.transpose(2, 0, 1)).mean() < 2
