"""CIFAR-10/100 from tiny archives built here in the official python-pickle layout (no download)."""
import dataclasses
import io
import pickle
import tarfile
import urllib.error

import numpy as np
import pytest

from cnnzoo.data import DataError, cifar, load_dataset


def _add_pickle(tar, name, obj):
    data = pickle.dumps(obj, protocol=2)
    member = tarfile.TarInfo(name)
    member.size = len(data)
    tar.addfile(member, io.BytesIO(data))


def make_archive(path, layout, per_class=5, n_classes=10, test_per_class=2):
    """An archive shaped like the official one; pixel value = 10 * label + index of the image in its class."""
    info = cifar.CIFAR_ARCHIVES[layout]

    def batch(count_per_class, offset):
        labels = np.repeat(np.arange(n_classes), count_per_class)
        within = np.tile(np.arange(count_per_class), n_classes) + offset
        data = np.repeat((10 * labels + within).astype(np.uint8)[:, None], 3072, axis=1)
        return {b"data": data, info.labels_key: labels.tolist(), b"batch_label": b"tiny"}

    names = [f"c{i}".encode() for i in range(n_classes)]
    with tarfile.open(path, "w:gz") as tar:
        _add_pickle(tar, f"{info.folder}/{info.meta_file}", {info.names_key: names})
        per_file = per_class // len(info.train_files) or 1
        for i, member in enumerate(info.train_files):
            _add_pickle(tar, f"{info.folder}/{member}", batch(per_file, i * per_file))
        _add_pickle(tar, f"{info.folder}/{info.test_files[0]}", batch(test_per_class, 0))
    return path


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    """Build both tiny archives in the cache dir and make their md5 the expected one."""
    for name, classes in (("cifar10", 10), ("cifar100", 4)):
        info = cifar.CIFAR_ARCHIVES[name]
        path = make_archive(tmp_path / info.archive, name, n_classes=classes)
        monkeypatch.setitem(cifar.CIFAR_ARCHIVES, name, dataclasses.replace(info, md5=cifar.file_md5(path)))
    return tmp_path


def test_cifar10_from_the_official_layout(tiny_cifar):
    splits = load_dataset("cifar10", cache_dir=tiny_cifar, val_fraction=0.2, progress=False)
    assert splits.class_names == [f"c{i}" for i in range(10)]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 10, 20)
    assert splits.image_size == 32 and splits.train.images.shape[1:] == (3, 32, 32)
    for part in (splits.train, splits.val, splits.test):
        # The pixel value encodes the label: rows and labels stayed aligned through split and cache.
        assert np.array_equal(part.images[:, 0, 0, 0] // 10, part.labels)
        assert (part.images == part.images[:, :1, :1, :1]).all()
    assert np.bincount(splits.val.labels).tolist() == [1] * 10
    assert isinstance(splits.train.images, np.memmap)


def test_cifar100_uses_fine_labels(tiny_cifar):
    splits = load_dataset("cifar100", cache_dir=tiny_cifar, val_fraction=0.0, image_size=16, progress=False)
    assert splits.class_names == ["c0", "c1", "c2", "c3"]
    assert splits.val is None and len(splits.train) == 20 and len(splits.test) == 8
    assert splits.train.images.shape[1:] == (3, 16, 16)
    assert np.array_equal(splits.train.images[:, 0, 0, 0] // 10, splits.train.labels)


def test_cifar_cache_is_reused_without_reading_the_archive(tiny_cifar, monkeypatch):
    first = load_dataset("cifar10", cache_dir=tiny_cifar, progress=False)

    def fail(*args):
        raise AssertionError("archive read again")

    monkeypatch.setattr(cifar, "read_archive", fail)
    again = load_dataset("cifar10", cache_dir=tiny_cifar, progress=False)
    assert again.cache_path == first.cache_path
    assert np.array_equal(again.val.images, first.val.images)
    archive = tiny_cifar / "cifar-10-python.tar.gz"
    content = archive.read_bytes()
    archive.unlink()  # the archive may go once prepared
    assert load_dataset("cifar10", cache_dir=tiny_cifar, progress=False).cache_path == first.cache_path
    archive.write_bytes(content)
    with pytest.raises(AssertionError, match="read again"):  # another seed: another val split, prepared anew
        load_dataset("cifar10", cache_dir=tiny_cifar, seed=1, progress=False)


def test_checksum_mismatch_names_the_file(tmp_path):
    make_archive(tmp_path / "cifar-10-python.tar.gz", "cifar10")  # not the official bytes
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz has md5 [0-9a-f]{32}, but the official .* "
                                        r"c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", cache_dir=tmp_path, progress=False)


def test_offline_says_which_file_to_place_where(tmp_path, monkeypatch):
    def offline(url, dest, progress=True):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(cifar, "download", offline)
    expected = r"offline.*cifar-100-python.tar.gz.*place it at .*eb9058c3a382ffc7106e4002c42a8d85"
    with pytest.raises(DataError, match=expected):
        load_dataset("cifar100", cache_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir()) or not (tmp_path / "cifar-100-python.tar.gz").exists()


def test_archive_with_anything_but_arrays_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add_pickle(tar, "cifar-10-batches-py/batches.meta", {b"label_names": [print]})  # a callable: refused
    info = cifar.CIFAR_ARCHIVES["cifar10"]
    monkeypatch.setitem(cifar.CIFAR_ARCHIVES, "cifar10", dataclasses.replace(info, md5=cifar.file_md5(path)))
    with pytest.raises(DataError, match="batches.meta"):
        load_dataset("cifar10", cache_dir=tmp_path, progress=False)
