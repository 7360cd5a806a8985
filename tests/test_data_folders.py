"""Image folders: layouts, the memmap cache (reuse, invalidation, crash safety) and every bad input."""
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from cnnzoo.data import DataError, folders, load_dataset
from cnnzoo.data.decode import decode_image

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "owl": (30, 30, 200)}


def write_image(path, colour, size=(40, 30), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, fmt)


def make_folder(root, counts=None, suffix=".jpg"):
    """root/<class>/<i>.jpg, each class a solid colour."""
    for name, n in (counts or {"cat": 5, "dog": 5, "owl": 5}).items():
        for i in range(n):
            write_image(root / name / f"{i}{suffix}", COLOURS[name])
    return root


def load(root, cache, **kw):
    return load_dataset(str(root), cache_dir=cache, progress=False, **kw)


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []

    def counting(path, size, resize):
        calls.append(path)
        return decode_image(path, size, resize)

    monkeypatch.setattr(folders, "decode_image", counting)
    return calls


def test_class_folders_with_a_stratified_val_split(tmp_path):
    splits = load(make_folder(tmp_path / "pets"), tmp_path / "cache", image_size=16, val_fraction=0.2)
    assert splits.class_names == ["cat", "dog", "owl"]
    assert (len(splits.train), len(splits.val), splits.test) == (12, 3, None)
    assert np.bincount(splits.val.labels).tolist() == [1, 1, 1]
    assert isinstance(splits.train.images, np.memmap) and splits.train.images.shape[1:] == (3, 16, 16)
    for part in (splits.train, splits.val):  # each image still has its class colour (JPEG: roughly)
        centre = part.images[:, :, 8, 8].astype(int)
        expected = np.array([COLOURS[splits.class_names[label]] for label in part.labels])
        assert np.abs(centre - expected).max() < 12
    assert splits.mean[0] == pytest.approx((200 * 4 + 30 * 8) / 12 / 255, abs=0.02)
    # The held-out files depend on the names only, not on the seed.
    other_seed = load(tmp_path / "pets", tmp_path / "cache2", image_size=16, val_fraction=0.2, seed=9)
    assert np.array_equal(other_seed.val.images, splits.val.images)


def test_train_val_test_layout(tmp_path):
    root = tmp_path / "data"
    make_folder(root / "train", {"cat": 3, "dog": 4})
    make_folder(root / "val", {"cat": 1, "dog": 2})
    make_folder(root / "test", {"cat": 2, "dog": 2}, suffix=".png")
    splits = load(root, tmp_path / "cache", image_size=8)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (7, 3, 4)
    assert splits.val.labels.tolist() == [0, 1, 1] and splits.test.labels.tolist() == [0, 0, 1, 1]
    assert np.abs(splits.test.images[:, :, 4, 4].astype(int)
                  - np.array([COLOURS["cat"]] * 2 + [COLOURS["dog"]] * 2)).max() <= 1  # PNG: exact


def test_cache_is_reused_and_rebuilt_when_files_or_settings_change(tmp_path, count_decodes):
    root, cache = make_folder(tmp_path / "pets"), tmp_path / "cache"
    first = load(root, cache, image_size=16)
    assert len(count_decodes) == 15
    again = load(root, cache, image_size=16)
    assert len(count_decodes) == 15 and again.cache_path == first.cache_path  # nothing decoded again
    assert np.array_equal(again.train.images, first.train.images)

    write_image(root / "cat" / "0.jpg", (255, 255, 255))  # a changed file (size and time differ)
    stat = (root / "cat" / "0.jpg").stat()
    os.utime(root / "cat" / "0.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = load(root, cache, image_size=16)
    assert len(count_decodes) == 30 and changed.cache_path == first.cache_path
    assert changed.train.images.max() == 255

    write_image(root / "dog" / "new.jpg", COLOURS["dog"])  # an added file
    added = load(root, cache, image_size=16)
    assert len(count_decodes) == 46 and len(added.train) + len(added.val) == 16

    resized = load(root, cache, image_size=8)  # other settings: another cache entry
    assert len(count_decodes) == 62 and resized.cache_path != first.cache_path
    load(root, cache, image_size=8, resize="pad")
    assert len(count_decodes) == 78


def test_killed_preparation_leaves_no_cache_that_looks_valid(tmp_path, monkeypatch):
    root, cache = make_folder(tmp_path / "pets"), tmp_path / "cache"
    good = load(root, cache, image_size=8)
    write_image(root / "cat" / "9.jpg", COLOURS["cat"])  # forces a rebuild
    calls = []

    def killed_midway(path, size, resize):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return decode_image(path, size, resize)

    monkeypatch.setattr(folders, "decode_image", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        load(root, cache, image_size=8)
    entry = tmp_path / "cache" / "folders" / os.path.basename(good.cache_path)
    assert not (entry / "manifest.json").exists()
    assert not [p for p in entry.iterdir() if ".tmp" in p.name]  # temporary files cleaned up
    monkeypatch.setattr(folders, "decode_image", decode_image)
    assert len(load(root, cache, image_size=8).train) == 13  # prepared again, whole


def test_corrupt_images_are_skipped_with_one_warning_and_other_files_ignored(tmp_path):
    root = make_folder(tmp_path / "pets")
    (root / "cat" / "broken.jpg").write_bytes(os.urandom(300))
    (root / "dog" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(50))
    (root / "dog" / "notes.txt").write_text("not an image")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = load(root, tmp_path / "cache", image_size=8)
    messages = [str(w.message) for w in caught if issubclass(w.category, folders.SkippedImagesWarning)]
    assert len(messages) == 1
    assert "skipped 2 unreadable image files" in messages[0]
    assert "cat/broken.jpg" in messages[0] and "dog/truncated.png" in messages[0] and "notes" not in messages[0]
    assert len(splits.train) + len(splits.val) == 15
    assert splits.skipped == ["cat/broken.jpg", "dog/truncated.png"]
    centre = np.concatenate([splits.train.images, splits.val.images])[:, :, 4, 4].astype(int)
    labels = np.concatenate([splits.train.labels, splits.val.labels])
    assert np.abs(centre - np.array([COLOURS[splits.class_names[i]] for i in labels])).max() < 12


def test_empty_class_folder_is_named(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 2, "dog": 2})
    (root / "owl").mkdir()
    (root / "owl" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder with no images: .*pets/owl"):
        load(root, tmp_path / "cache")


def test_val_classes_must_match_train(tmp_path):
    root = tmp_path / "data"
    make_folder(root / "train", {"cat": 2, "dog": 2})
    make_folder(root / "val", {"cat": 1, "owl": 1})
    with pytest.raises(DataError, match=r"classes of .*data/val differ from those of .*data/train "
                                        r"\(missing from .*val: dog; not in .*train: owl\)"):
        load(root, tmp_path / "cache")


def test_one_class_is_an_error(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 3})
    with pytest.raises(DataError, match=r"pets has only one class folder \(cat\)"):
        load(root, tmp_path / "cache")


def test_folder_without_class_folders_and_class_of_only_corrupt_files(tmp_path):
    flat = tmp_path / "flat"
    write_image(flat / "a.jpg", (0, 0, 0))
    with pytest.raises(DataError, match=r"no class folders in .*flat"):
        load(flat, tmp_path / "cache")
    root = make_folder(tmp_path / "pets", {"cat": 2, "dog": 2})
    (root / "owl").mkdir()
    (root / "owl" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"none of the 1 images in .*pets/owl .*could be read"):
        load(root, tmp_path / "cache")


def test_process_and_thread_preparation_give_the_same_cache(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 40, "dog": 30})
    (root / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", folders.SkippedImagesWarning)
        by_threads = folders.load_folder(root, tmp_path / "a", image_size=8, progress=False, workers=2,
                                         executor="threads")
        by_processes = folders.load_folder(root, tmp_path / "b", image_size=8, progress=False, workers=2,
                                           executor="processes")
    assert by_processes.skipped == by_threads.skipped == ["cat/broken.jpg"]
    for name in ("train", "val"):
        a, b = getattr(by_threads, name), getattr(by_processes, name)
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert by_processes.train.images[:, :, 4, 4].min(axis=1).max() > 0  # rows really written
