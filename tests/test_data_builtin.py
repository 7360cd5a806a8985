"""Built-in sources (digits, synthetic) and the split / statistics helpers."""
import numpy as np
import pytest

from cnnzoo.data import DataError, load_dataset
from cnnzoo.data.splits import channel_stats, stratified_split


def test_digits_are_the_real_scikit_learn_digits():
    splits = load_dataset("digits", val_fraction=0.2, seed=0)
    # scikit-learn ships 1797 digits in 10 classes (sklearn.datasets.load_digits documentation).
    assert len(splits.train) + len(splits.val) == 1797
    assert splits.class_names == [str(i) for i in range(10)]
    assert splits.image_size == 32 and splits.in_chans == 3 and splits.test is None
    assert splits.train.images.shape[1:] == (3, 32, 32) and splits.train.images.dtype == np.uint8
    assert splits.train.labels.dtype == np.int64
    # Grey replicated to RGB, full 0..255 range used.
    img = splits.train.images
    assert np.array_equal(img[:, 0], img[:, 1]) and img.max() == 255 and img.min() == 0
    # Stratified: every class in val, about 20 % of it.
    counts = np.bincount(splits.val.labels, minlength=10)
    assert counts.min() >= 30 and abs(len(splits.val) - 359) <= 5
    assert all(0 <= m <= 1 for m in splits.mean) and all(0 < s <= 1 for s in splits.std)


def test_digits_size_and_seed():
    small = load_dataset("digits", image_size=16, seed=1)
    assert small.train.images.shape[1:] == (3, 16, 16)
    other = load_dataset("digits", image_size=16, seed=2)
    assert not np.array_equal(small.val.labels, other.val.labels) or \
        not np.array_equal(small.val.images, other.val.images)
    again = load_dataset("digits", image_size=16, seed=1)
    assert np.array_equal(small.val.images, again.val.images)


def test_synthetic_spec_and_determinism():
    splits = load_dataset("synthetic:classes=3,n=60,size=16", val_fraction=0.25, seed=4)
    assert splits.class_names == ["class0", "class1", "class2"]
    assert len(splits.train) == 45 and len(splits.val) == 15
    assert splits.train.images.shape[1:] == (3, 16, 16)
    again = load_dataset("synthetic:classes=3,n=60,size=16", val_fraction=0.25, seed=4)
    assert np.array_equal(splits.train.images, again.train.images)
    assert load_dataset("synthetic", image_size=8).image_size == 8


def test_synthetic_classes_are_separable():
    # A nearest-class-mean classifier on raw pixels should already do well: the set is learnable.
    splits = load_dataset("synthetic:classes=4,n=200,size=16", seed=0)
    train = splits.train.images.reshape(len(splits.train), -1).astype(float)
    means = np.stack([train[splits.train.labels == c].mean(0) for c in range(4)])
    val = splits.val.images.reshape(len(splits.val), -1).astype(float)
    predicted = np.argmin(((val[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == splits.val.labels).mean() > 0.9


@pytest.mark.parametrize("spec, message", [
    ("synthetic:classes=1", "classes >= 2"),
    ("synthetic:colour=3", "bad synthetic dataset option"),
    ("synthetic:n=ten", "must be an integer"),
])
def test_bad_synthetic_specs(spec, message):
    with pytest.raises(DataError, match=message):
        load_dataset(spec)


def test_unknown_source_lists_what_exists(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*digits.*synthetic.*cifar10"):
        load_dataset(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="val-fraction"):
        load_dataset("digits", val_fraction=1.0)
    with pytest.raises(DataError, match="resize mode"):
        load_dataset("digits", resize="squash")


def test_stratified_split_and_stats():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 1)
    train, val = stratified_split(labels, 0.2, seed=0)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(16))
    assert np.bincount(labels[val], minlength=3).tolist() == [2, 1, 0]
    images = np.zeros((4, 3, 2, 2), np.uint8)
    images[:, 0] = 255
    images[:2, 1] = 255
    mean, std = channel_stats(images, chunk=3)
    assert np.allclose(mean, (1.0, 0.5, 0.0)) and np.allclose(std[:2], (0.0 + 1e-3, 0.5), atol=1e-6)
