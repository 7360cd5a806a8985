"""BatchLoader and augmentation: shapes, dtypes, label alignment, determinism, normalisation."""
import numpy as np
import pytest
import torch

from cnnzoo.data import AUGMENT_PRESETS, BatchLoader, DataError, ImageSet, PadCrop, RandomResizedCrop
from cnnzoo.data.augment import HorizontalFlip


def labelled_set(n=37, size=16):
    """Each image is filled with its own label value, so any label/image mix-up shows."""
    labels = np.arange(n) % 7
    images = np.broadcast_to((labels * 30).astype(np.uint8)[:, None, None, None], (n, 3, size, size)).copy()
    return ImageSet(images, labels)


def collect(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


@pytest.mark.parametrize("augment", list(AUGMENT_PRESETS))
def test_batches_keep_shapes_dtypes_and_labels(augment):
    data = labelled_set()
    loader = BatchLoader(data, 8, augment=augment, seed=3)
    batches = collect(loader)
    assert len(batches) == len(loader) == 5
    seen = []
    for x, y in batches:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (3, 16, 16) and len(x) == len(y)
        # Constant images stay constant under crops, flips and resizes: the value still gives the label.
        per_image = x.flatten(1)
        assert torch.allclose(per_image.min(1).values, per_image.max(1).values, atol=1e-4)
        assert torch.allclose(per_image[:, 0] * 255 / 30, y.float(), atol=1e-3)
        seen.append(y)
    assert sorted(torch.cat(seen).tolist()) == sorted(data.labels.tolist())  # every sample once


def test_drop_last_and_len():
    data = labelled_set(n=10)
    assert len(BatchLoader(data, 4, drop_last=True)) == 2
    assert [len(y) for _, y in BatchLoader(data, 4, drop_last=True)] == [4, 4]
    assert [len(y) for _, y in BatchLoader(data, 4)] == [4, 4, 2]
    assert [len(y) for _, y in BatchLoader(labelled_set(n=8), 4, drop_last=True)] == [4, 4]


def test_order_and_augmentation_depend_only_on_seed_and_epoch():
    rng = np.random.default_rng(0)
    data = ImageSet(rng.integers(0, 256, (40, 3, 12, 12), dtype=np.uint8), np.arange(40) % 4)
    a = BatchLoader(data, 8, augment="standard", seed=5)
    b = BatchLoader(data, 8, augment="standard", seed=5)
    a.set_epoch(2)
    b.set_epoch(0)
    list(b)
    list(b)  # b walks through epochs 0 and 1, then reaches 2 by itself
    for (xa, ya), (xb, yb) in zip(collect(a), collect(b)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    a.set_epoch(3)
    c = BatchLoader(data, 8, augment="standard", seed=6)
    c.set_epoch(2)
    b.set_epoch(2)
    first_b, first_a, first_c = collect(b)[0], collect(a)[0], collect(c)[0]
    assert not torch.equal(first_a[0], first_b[0])  # another epoch
    assert not torch.equal(first_c[0], first_b[0])  # another seed


def test_unshuffled_without_augment_is_the_data_in_order():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (9, 3, 8, 8), dtype=np.uint8)
    data = ImageSet(images, np.arange(9))
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.2)
    x = torch.cat([x for x, _ in BatchLoader(data, 4, shuffle=False, mean=mean, std=std)])
    expected = (torch.from_numpy(images).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / \
        torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)


def test_channels_last_output():
    x, _ = next(iter(BatchLoader(labelled_set(), 4, channels_last=True, augment="light")))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_pad_crop_is_a_shift_of_the_image():
    # A horizontal ramp: any crop-with-padding keeps the rows identical and shifts (reflects) columns.
    ramp = torch.arange(32, dtype=torch.uint8).repeat(4, 3, 32, 1)
    out = PadCrop(pad_fraction=1 / 8)(ramp, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == ramp.shape
    for img in out:
        row = img[0, 0].long()
        diffs = row[1:] - row[:-1]
        # Away from the reflected border the ramp still increases by exactly 1 per pixel.
        assert (diffs[5:-5] == 1).all()
        assert abs(int(row[16]) - 16) <= 4  # shifted by at most pad = 4 px


def test_flip_mirrors_some_images_and_keeps_others():
    ramp = torch.arange(8, dtype=torch.uint8).repeat(64, 3, 8, 1)
    out = HorizontalFlip()(ramp, torch.Generator().manual_seed(0))
    flipped = (out[:, 0, 0, 0] == 7)
    assert 10 < int(flipped.sum()) < 54
    assert torch.equal(out[flipped], ramp[flipped].flip(-1))
    assert torch.equal(out[~flipped], ramp[~flipped])


def test_random_resized_crop_full_scale_is_identity():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.integers(0, 256, (3, 3, 10, 10), dtype=np.uint8))
    out = RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0))(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x.float(), atol=1e-3, rtol=0)


def test_bad_loader_arguments():
    with pytest.raises(DataError, match="unknown augmentation 'heavy'"):
        BatchLoader(labelled_set(), 4, augment="heavy")
    with pytest.raises(DataError, match="batch size"):
        BatchLoader(labelled_set(), 0)


def test_pad_crop_fast_cpu_path_equals_the_generic_gather():
    from cnnzoo.data.augment import _crop_gather, _crop_windows

    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (6, 3, 16, 12), dtype=np.uint8)
    dy, dx = rng.integers(0, 9, 6), rng.integers(0, 9, 6)
    fast = _crop_windows(x, 4, dy, dx)
    generic = _crop_gather(torch.from_numpy(x), 4, torch.from_numpy(dy), torch.from_numpy(dx)).numpy()
    assert np.array_equal(fast, generic)
    padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)), mode="reflect")
    assert np.array_equal(fast[2], padded[2, :, dy[2]:dy[2] + 16, dx[2]:dx[2] + 12])


def test_box_grid_matches_affine_grid():
    from cnnzoo.data.augment import _box_grid

    w, h = torch.tensor([0.5, 1.0], dtype=torch.float64), torch.tensor([0.7, 0.4], dtype=torch.float64)
    cx, cy = torch.tensor([0.2, 0.0], dtype=torch.float64), torch.tensor([-0.1, 0.5], dtype=torch.float64)
    theta = torch.zeros(2, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    expected = torch.nn.functional.affine_grid(theta, [2, 3, 5, 7], align_corners=False).float()
    torch.testing.assert_close(_box_grid(w, h, cx, cy, 5, 7), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("augment", list(AUGMENT_PRESETS))
def test_cuda_batches_equal_cpu_batches(augment):
    rng = np.random.default_rng(4)
    data = ImageSet(rng.integers(0, 256, (50, 3, 24, 24), dtype=np.uint8), np.arange(50) % 5)
    kw = dict(augment=augment, seed=1, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25), channels_last=True)
    for (xc, yc), (xg, yg) in zip(BatchLoader(data, 16, **kw), BatchLoader(data, 16, device="cuda", **kw)):
        assert xg.is_cuda and xg.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(yc, yg.cpu())
        torch.testing.assert_close(xg.cpu(), xc, atol=1e-4, rtol=0)


@pytest.mark.parametrize("shape, pad", [((2, 3, 8, 8), 1), ((2, 3, 16, 12), 4), ((1, 3, 5, 9), 4), ((1, 3, 9, 5), 4)])
def test_reflect_pad_equals_numpy(shape, pad):
    from cnnzoo.data.augment import _reflect_pad

    x = np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8)
    assert np.array_equal(_reflect_pad(x, pad), np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect"))
