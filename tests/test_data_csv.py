"""CSV label lists: finding the columns, relative and absolute paths, a validation list, a split
column, the cache (reuse and invalidation) and every bad input, on lists and images the tests write."""
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from cnnzoo.data import DataError, folders, load_dataset
from cnnzoo.data.decode import decode_image

COLOURS = {"daisy": (230, 230, 40), "rose": (200, 20, 40), "tulip": (150, 40, 200)}


def write_image(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 18), colour).save(path)  # PNG: colours come back exactly


def write_list(path, header, rows):
    path.write_text("\n".join([header, *(",".join(str(v) for v in row) for row in rows)]) + "\n")
    return path


def photos(root, counts):
    """root/photos/<class>_<i>.png; returns [(relative path, class)] in a fixed order."""
    listed = []
    for name, n in counts.items():
        for i in range(n):
            write_image(root / "photos" / f"{name}_{i}.png", COLOURS[name])
            listed.append((f"photos/{name}_{i}.png", name))
    return listed


def load(source, cache, **kw):
    return load_dataset(str(source), cache_dir=cache, progress=False, image_size=8, **kw)


def colours_match(part, class_names):
    centre = part.images[:, :, 4, 4].astype(int)
    return np.array_equal(centre, np.array([COLOURS[class_names[label]] for label in part.labels]))


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []

    def counting(path, size, resize):
        calls.append(path)
        return decode_image(path, size, resize)

    monkeypatch.setattr(folders, "decode_image", counting)
    return calls


def test_the_course_layout_a_train_list_and_a_test_list_with_a_class_column(tmp_path):
    rows = photos(tmp_path, {"daisy": 4, "rose": 4, "tulip": 4})
    # the path column is found by its values: neither its name nor its place says so
    train = write_list(tmp_path / "flowers_dataset_train.csv", "id,image_name,class",
                       [(i, p, c) for i, (p, c) in enumerate(rows) if not p.endswith("_3.png")])
    test = write_list(tmp_path / "flowers_dataset_test.csv", "id,image_name,class",
                      [(i, p, c) for i, (p, c) in enumerate(rows) if p.endswith("_3.png")])
    splits = load(train, tmp_path / "cache", val_source=test)
    assert splits.class_names == ["daisy", "rose", "tulip"]
    assert (len(splits.train), len(splits.val), splits.test) == (9, 3, None)
    assert splits.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and splits.val.labels.tolist() == [0, 1, 2]
    assert colours_match(splits.train, splits.class_names) and colours_match(splits.val, splits.class_names)
    assert isinstance(splits.train.images, np.memmap)
    assert splits.mean[0] == pytest.approx((230 + 200 + 150) / 3 / 255, abs=1e-6)


def test_absolute_and_relative_paths_integer_labels_and_a_missing_file(tmp_path):
    rows = photos(tmp_path / "elsewhere", {"daisy": 3, "rose": 3})
    listed = [(str(tmp_path / "elsewhere" / p), int(c == "rose")) for p, c in rows[:3]]  # absolute
    write_image(tmp_path / "lists" / "near.png", COLOURS["rose"])
    listed += [("near.png", 1), ("../elsewhere/" + rows[4][0], 1), ("gone.png", 0)]  # relative to the list
    source = write_list(tmp_path / "lists" / "labels.csv", "file,label", listed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = load(source, tmp_path / "cache", val_fraction=0)
    assert splits.class_names == ["0", "1"]  # integer labels keep their numbers
    assert splits.train.labels.tolist() == [0, 0, 0, 1, 1]
    assert colours_match(splits.train, ["daisy", "rose"])
    messages = [str(w.message) for w in caught if issubclass(w.category, folders.SkippedImagesWarning)]
    assert messages == ["skipped 1 listed image in labels.csv: gone.png (labels.csv line 7, not found)"]
    assert splits.skipped == ["gone.png (labels.csv line 7, not found)"]


def test_integer_labels_sort_as_numbers_and_names_sort_as_text(tmp_path):
    rows = photos(tmp_path, {"daisy": 2, "rose": 2, "tulip": 2})
    numbers = write_list(tmp_path / "n.csv", "path,label", [(p, n) for (p, _), n in zip(rows, [10, 10, 9, 9, 2, 2])])
    splits = load(numbers, tmp_path / "cache", val_fraction=0)
    assert splits.class_names == ["2", "9", "10"] and splits.train.labels.tolist() == [2, 2, 1, 1, 0, 0]


def test_a_split_column_places_rows_and_unreadable_images_are_skipped(tmp_path):
    rows = photos(tmp_path, {"daisy": 4, "rose": 4})
    (tmp_path / "photos" / "broken.png").write_bytes(os.urandom(200))
    split = ["train", "train", "val", "test"] * 2
    listed = [(p, c, s) for (p, c), s in zip(rows, split)] + [("photos/broken.png", "rose", "train")]
    source = write_list(tmp_path / "labels.csv", "path,category,split", listed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = load(source, tmp_path / "cache", val_fraction=0.5)  # a val split exists: nothing held out
    assert [len(splits.train), len(splits.val), len(splits.test)] == [4, 2, 2]
    assert splits.test.labels.tolist() == [0, 1] and colours_match(splits.test, ["daisy", "rose"])
    assert splits.skipped == ["photos/broken.png (labels.csv line 10, unreadable)"]
    assert any("photos/broken.png (labels.csv line 10, unreadable)" in str(w.message) for w in caught)


def test_held_out_rows_depend_on_the_paths_not_the_seed(tmp_path):
    source = write_list(tmp_path / "labels.csv", "path,label", photos(tmp_path, {"daisy": 10, "rose": 10}))
    one = load(source, tmp_path / "cache", val_fraction=0.2, seed=0)
    other = load(source, tmp_path / "cache2", val_fraction=0.2, seed=5)
    assert np.bincount(one.val.labels).tolist() == [2, 2] and len(one.train) == 16
    assert np.array_equal(one.val.images, other.val.images)


def test_cache_is_reused_until_the_list_or_a_listed_file_changes(tmp_path, count_decodes):
    rows = photos(tmp_path, {"daisy": 3, "rose": 3})
    source = write_list(tmp_path / "labels.csv", "path,label", rows)
    first = load(source, tmp_path / "cache", val_fraction=0)
    assert len(count_decodes) == 6
    again = load(source, tmp_path / "cache", val_fraction=0)
    assert len(count_decodes) == 6 and again.cache_path == first.cache_path

    write_list(source, "path,label", rows[:-1] + [(rows[-1][0], "daisy")])  # a label edited
    relabelled = load(source, tmp_path / "cache", val_fraction=0)
    assert len(count_decodes) == 12 and relabelled.train.labels.tolist() == [0, 0, 0, 1, 1, 0]  # list order

    image = tmp_path / rows[0][0]
    write_image(image, (255, 255, 255))  # a listed file changed
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = load(source, tmp_path / "cache", val_fraction=0)
    assert len(count_decodes) == 18 and changed.train.images[0].min() == 255


@pytest.mark.parametrize("header, rows, kwargs, message", [
    ("path,label", [("photos/daisy_0.png", "daisy"), ("photos/rose_0.png", "")], {},
     r"labels.csv, line 3: empty label in column 'label' for photos/rose_0.png"),
    ("path,species", [("photos/daisy_0.png", "daisy")], {},
     r"labels.csv has no label column \(label, class, category\); its columns are path, species. .*--label-column"),
    ("path,label", [("photos/daisy_0.png", "daisy")], {"label_column": "kind"},
     r"--label-column 'kind' is not a column of .*labels.csv; its columns are path, label"),
    ("path,label", [("photos/daisy_0.png", "daisy")], {"path_column": "file"},
     r"--path-column 'file' is not a column of .*labels.csv"),
    ("path,label", [("nowhere/a.png", "daisy"), ("nowhere/b.png", "rose")], {},
     r"no column of .*labels.csv names image files that exist .*--path-column"),
    ("path,label,split", [("photos/daisy_0.png", "daisy", "train"), ("photos/rose_0.png", "rose", "holdout")], {},
     r"labels.csv, line 3: split 'holdout' is not one of train, val, test"),
    ("path,label", [("photos/daisy_0.png", "daisy"), ("photos/daisy_1.png", "daisy")], {},
     r"labels.csv has only one class \(daisy\)"),
])
def test_bad_lists_name_the_file_the_line_and_the_fix(tmp_path, header, rows, kwargs, message):
    photos(tmp_path, {"daisy": 2, "rose": 2})
    source = write_list(tmp_path / "labels.csv", header, rows)
    with pytest.raises(DataError, match=message):
        load(source, tmp_path / "cache", **kwargs)


def test_a_class_only_in_the_validation_list_is_an_error(tmp_path):
    rows = photos(tmp_path, {"daisy": 2, "rose": 2, "tulip": 1})
    train = write_list(tmp_path / "train.csv", "path,class", rows[:4])
    test = write_list(tmp_path / "test.csv", "path,class", rows[3:])
    with pytest.raises(DataError, match=r"class not in the training rows of train.csv: "
                                        r"'tulip' \(val, first at test.csv line 3\)"):
        load(train, tmp_path / "cache", val_source=test)


def test_val_data_and_path_column_need_a_label_list(tmp_path):
    folder = tmp_path / "pets"
    photos(folder, {"daisy": 2, "rose": 2})
    with pytest.raises(DataError, match=r"--val-data applies to CSV label lists"):
        load(folder, tmp_path / "cache", val_source=tmp_path / "x.csv")
    source = write_list(tmp_path / "labels.csv", "path,label", [("pets/photos/daisy_0.png", "daisy")])
    with pytest.raises(DataError, match=r"--val-data 'missing.csv': not a CSV file \(not found\)"):
        load(source, tmp_path / "cache", val_source="missing.csv")


def test_another_val_fraction_is_another_cache_entry(tmp_path):
    source = write_list(tmp_path / "labels.csv", "path,label", photos(tmp_path, {"daisy": 10, "rose": 10}))
    fifth = load(source, tmp_path / "cache", val_fraction=0.2)
    half = load(source, tmp_path / "cache", val_fraction=0.5)
    assert (len(fifth.val), len(half.val)) == (4, 10) and fifth.cache_path != half.cache_path
    assert len(load(source, tmp_path / "cache", val_fraction=0.2).val) == 4
