"""Batch policies (TrivialAugment, RandAugment, random erasing) and the presets that use them.

The golden reference for every op is torchvision 0.29's functional op on uint8 images (the
implementation torchvision's own ``TrivialAugmentWide`` and ``RandAugment`` call).
"""
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from cnnzoo.data import BatchLoader, DataError, ImageSet
from cnnzoo.data import augment as A
from cnnzoo.data.loader import epoch_generator

pytestmark = pytest.mark.usefixtures("one_thread")

POLICIES = [A.TrivialAugmentWide(), A.RandAugment(), A.RandomErasing(p=0.5), A.RandomErasing(p=1.0, value=0.0)]
NEAREST = InterpolationMode.NEAREST


def images(b=6, h=20, w=24, seed=0):
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def per_image(fn, x, value, dtype=torch.float64):
    return fn(x.float(), torch.full((len(x),), value, dtype=dtype))


@pytest.mark.parametrize("m", [0.5, -0.3])
@pytest.mark.parametrize("ours, reference", [
    (A._brightness, TF.adjust_brightness), (A._color, TF.adjust_saturation),
    (A._contrast, TF.adjust_contrast), (A._sharpness, TF.adjust_sharpness)])
def test_colour_ops_equal_torchvision_within_its_uint8_rounding(ours, reference, m):
    x = images()
    # torchvision truncates its grey image to uint8 before blending; we stay in float.
    diff = (per_image(ours, x, m) - reference(x, 1 + m).float()).abs()
    assert diff.max() <= 1.5


@pytest.mark.parametrize("ours, reference, value", [
    (A._posterize, TF.posterize, 3), (A._solarize, TF.solarize, 100.0),
    (A._autocontrast, lambda x, _: TF.autocontrast(x), 0.0), (A._equalize, lambda x, _: TF.equalize(x), 0.0)])
def test_value_ops_equal_torchvision(ours, reference, value):
    x = images()
    x[0] = 7  # a constant image: autocontrast and equalize leave it alone
    out = per_image(ours, x, value)
    if ours is A._autocontrast:
        out = out.floor()  # torchvision's cast back to uint8 truncates
    assert torch.equal(out, reference(x, value).float())


@pytest.mark.parametrize("m", [0.4, -0.25])
def test_geometric_ops_equal_torchvision(m):
    x = images()
    shear = math.degrees(math.atan(m))
    cases = [
        (A._shear_x, m, TF.affine(x, 0.0, [0, 0], 1.0, [shear, 0.0], NEAREST, None, [0, 0])),
        (A._shear_y, m, TF.affine(x, 0.0, [0, 0], 1.0, [0.0, shear], NEAREST, None, [0, 0])),
        (A._translate_x, 20 * m, TF.affine(x, 0.0, [int(20 * m), 0], 1.0, [0.0, 0.0], NEAREST, None)),
        (A._translate_y, 20 * m, TF.affine(x, 0.0, [0, int(20 * m)], 1.0, [0.0, 0.0], NEAREST, None)),
        (A._rotate, 100 * m, TF.rotate(x, 100 * m, NEAREST)),
    ]
    for ours, value, expected in cases:
        assert torch.equal(per_image(ours, x, value), expected.float()), ours.__name__


def test_magnitude_spaces_are_torchvisions():
    from torchvision.transforms import RandAugment, TrivialAugmentWide

    theirs = TrivialAugmentWide()._augmentation_space(31)
    for name, values in A.trivial_augment_space(31, (32, 32)).items():
        assert torch.allclose(values.double(), theirs[name][0].double().reshape(-1)), name
        assert A._OPS[name][1] == theirs[name][1], name
    theirs = RandAugment()._augmentation_space(31, (40, 48))
    for name, values in A.rand_augment_space(31, (40, 48)).items():
        assert torch.allclose(values.double(), theirs[name][0].double().reshape(-1)), name


@pytest.mark.parametrize("step", POLICIES, ids=repr)
def test_policies_keep_shape_and_are_a_function_of_the_generator(step):
    x = images(b=16)
    a = step(x, torch.Generator().manual_seed(3))
    b = step(x, torch.Generator().manual_seed(3))
    c = step(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 255
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_each_image_gets_its_own_op():
    """Per-image draws: with 64 images and 14 ops, every op's images are transformed together, and
    the result for an image equals applying its op to it alone."""
    x = images(b=64, h=12, w=12)
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    out = A.TrivialAugmentWide()(x, gen)
    gen.set_state(state)
    op_ids = torch.randint(0, len(A._OPS), (64,), generator=gen)
    assert len(op_ids.unique()) > 7
    bins = torch.randint(0, 31, (64,), generator=gen)
    table = torch.stack([v.expand(31) for v in A.trivial_augment_space(31, (12, 12)).values()]).double()
    magnitudes = A._draw_signs(table[op_ids, bins], op_ids, gen)
    for i in (0, 17, 40):
        fn = list(A._OPS.values())[op_ids[i]][0]
        assert torch.equal(out[i:i + 1], fn(x[i:i + 1].float(), magnitudes[i:i + 1])), i


def test_random_erasing_erases_one_box_per_chosen_image():
    x = torch.full((32, 3, 16, 16), 100, dtype=torch.uint8)
    out = A.RandomErasing(p=0.5, value=0.0)(x, torch.Generator().manual_seed(1))
    erased = (out == 0).all(1)  # [B, H, W]
    touched = erased.flatten(1).any(1)
    assert 4 < touched.sum() < 28
    for mask in erased[touched]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        box = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.all() and mask.sum() == box.numel()  # one solid rectangle
        assert 0.02 * 256 * 0.5 <= mask.sum() <= 0.33 * 256 * 1.5
    assert (out[~touched] == 100).all()


@pytest.mark.parametrize("preset", list(A.POLICY_PRESETS))
def test_policy_presets_through_the_loader_keep_labels_and_depend_on_seed_and_epoch(preset):
    rng = np.random.default_rng(0)
    labels = np.arange(24) % 4
    data = ImageSet(rng.integers(0, 256, (24, 3, 16, 16), dtype=np.uint8), labels)
    a = BatchLoader(data, 8, augment=preset, seed=5)
    b = BatchLoader(data, 8, augment=preset, seed=5)
    a.set_epoch(1)
    list(b)  # b reaches epoch 1 by itself
    seen = []
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.shape == (8, 3, 16, 16) and xa.dtype == torch.float32 and ya.dtype == torch.int64
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        seen.append(ya)
    assert sorted(torch.cat(seen).tolist()) == sorted(labels.tolist())
    # Which images form a batch is the loader's draw: the labels follow their images.
    idx = BatchLoader(data, 8, augment=preset, seed=5).batch_indices(1)
    assert [labels[i].tolist() for i in idx] == [y.tolist() for y in seen]


def test_same_generator_state_gives_the_same_batch():
    x = images(b=8)
    steps = A.resolve_augment("standard-randaug-erase")
    one = A.apply_augment(steps, x, epoch_generator(3, 2))
    two = A.apply_augment(steps, x, epoch_generator(3, 2))
    assert torch.equal(one, two)
    assert not torch.equal(one, A.apply_augment(steps, x, epoch_generator(3, 3)))


def test_unknown_preset_names_the_choices():
    with pytest.raises(DataError, match="light-trivial"):
        A.resolve_augment("heavy")
    with pytest.raises(DataError, match="magnitude 40"):
        A.RandAugment(magnitude=40)


def test_progressive_sizes_rise_to_the_final_size_and_end_there():
    sizes = [A.progressive_size(e, 10, 128) for e in range(10)]
    assert sizes[0] == 64 and sizes[-2:] == [128, 128]
    assert sizes == sorted(sizes) and all(s % 16 == 0 for s in sizes)
    assert [A.progressive_size(e, 1, 128) for e in range(1)] == [128]
    assert min(A.progressive_size(e, 10, 32) for e in range(10)) == 32  # never below min_size


def test_downscale_resizes_the_batch_and_keeps_constant_images_constant():
    x = torch.full((4, 3, 32, 32), 90, dtype=torch.uint8)
    out = A.Downscale(16)(x, torch.Generator())
    assert out.shape == (4, 3, 16, 16) and torch.allclose(out, torch.full_like(out, 90.0))
    assert A.Downscale(32)(x, torch.Generator()) is x
