"""Parquet image sets in the Hugging Face layout, written here with pyarrow: split files in a folder,
one file, class names from the metadata or the values, the cache, and the bad inputs."""
import io
import json
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from cnnzoo.data import DataError, folders, load_dataset
from cnnzoo.data import parquet as parquet_source

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

NAMES = ["cat", "dog", "owl"]
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


def png_bytes(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (20, 14), colour).save(buffer, "PNG")
    return buffer.getvalue()


def write_set(path, labels, *, class_names=NAMES, images=None, image_column="image"):
    """What ``datasets.Dataset.to_parquet`` writes: image struct<bytes, path>, label, features in the metadata."""
    images = images if images is not None else [png_bytes(COLOURS[label]) for label in labels]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cells = [{"bytes": data, "path": f"{i}.png"} for i, data in enumerate(images)]
    features = {image_column: {"_type": "Image"}, "label": {"_type": "Value", "dtype": "int64"}}
    if class_names:
        features["label"] = {"_type": "ClassLabel", "names": class_names}
    schema = pa.schema([(image_column, image_type), ("label", pa.int64())],
                       metadata={"huggingface": json.dumps({"info": {"features": features}})})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({image_column: cells, "label": labels}, schema=schema), path)
    return path


def load(source, cache, **kw):
    return load_dataset(str(source), cache_dir=cache, progress=False, image_size=8, **kw)


def colours_match(part):
    return np.array_equal(part.images[:, :, 4, 4].astype(int), np.array([COLOURS[i] for i in part.labels]))


def test_a_hugging_face_folder_with_train_validation_and_test_files(tmp_path):
    root = tmp_path / "pets"
    write_set(root / "data" / "train-00000-of-00002.parquet", [0, 1, 2, 0])
    write_set(root / "data" / "train-00001-of-00002.parquet", [1, 2])
    write_set(root / "data" / "validation-00000-of-00001.parquet", [2, 1, 0])
    write_set(root / "data" / "test-00000-of-00001.parquet", [1, 1])
    splits = load(root, tmp_path / "cache")
    assert splits.class_names == NAMES
    assert splits.train.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert splits.val.labels.tolist() == [2, 1, 0] and splits.test.labels.tolist() == [1, 1]
    assert all(colours_match(part) for part in (splits.train, splits.val, splits.test))
    assert isinstance(splits.train.images, np.memmap)


def test_one_file_holds_out_a_fraction_and_names_come_from_the_values_without_metadata(tmp_path):
    source = write_set(tmp_path / "digits.parquet", [0, 1] * 5, class_names=None)
    splits = load(source, tmp_path / "cache", val_fraction=0.2)
    assert splits.class_names == ["0", "1"]
    assert (len(splits.train), len(splits.val)) == (8, 2) and np.bincount(splits.val.labels).tolist() == [1, 1]
    assert colours_match(splits.train) and colours_match(splits.val)


def test_string_labels_are_class_names(tmp_path):
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({"image": pa.array([{"bytes": png_bytes(COLOURS[i % 2]), "path": None} for i in range(4)],
                                        image_type),
                      "label": ["cat", "dog", "cat", "dog"]})
    pq.write_table(table, tmp_path / "train.parquet")
    splits = load(tmp_path / "train.parquet", tmp_path / "cache", val_fraction=0)
    assert splits.class_names == ["cat", "dog"] and splits.train.labels.tolist() == [0, 1, 0, 1]


def test_unreadable_rows_are_skipped_with_one_warning_and_the_cache_is_reused(tmp_path, monkeypatch):
    images = [png_bytes(COLOURS[label]) for label in [0, 1, 0, 1]]
    images[2] = b"not an image"
    source = write_set(tmp_path / "train.parquet", [0, 1, 0, 1], images=images, class_names=["cat", "dog"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = load(source, tmp_path / "cache", val_fraction=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, folders.SkippedImagesWarning)]
    assert len(messages) == 1
    assert "skipped 1 unreadable image in" in messages[0] and "train.parquet row 2" in messages[0]
    assert splits.train.labels.tolist() == [0, 1, 1] and colours_match(splits.train)

    decoded = []
    monkeypatch.setattr(parquet_source, "decode_image", lambda *a: decoded.append(a))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", folders.SkippedImagesWarning)
        again = load(source, tmp_path / "cache", val_fraction=0)
    assert decoded == [] and again.cache_path == splits.cache_path


def test_a_file_without_an_image_column_is_an_error(tmp_path):
    pq.write_table(pa.table({"text": ["a", "b"], "label": [0, 1]}), tmp_path / "train.parquet")
    with pytest.raises(DataError, match=r"train.parquet has no image column: .*its columns are text, label"):
        load(tmp_path / "train.parquet", tmp_path / "cache")


def test_empty_labels_and_a_class_only_in_validation_are_errors(tmp_path):
    with pytest.raises(DataError, match=r"a.parquet, row 1: empty label in column 'label'"):
        load(write_set(tmp_path / "a.parquet", [0, -1]), tmp_path / "cache")
    root = tmp_path / "set"
    write_set(root / "train.parquet", [0, 1, 0, 1], class_names=None)
    write_set(root / "validation.parquet", [0, 2], class_names=None)
    with pytest.raises(DataError, match=r"validation.parquet, row 1: class '2' is not among the training rows"):
        load(root, tmp_path / "cache")
    with pytest.raises(DataError, match=r"--label-column 'kind' is not a column of .*train.parquet"):
        load(root, tmp_path / "cache", label_column="kind")


def test_without_pyarrow_the_message_names_the_extra(tmp_path, monkeypatch):
    source = write_set(tmp_path / "train.parquet", [0, 1])
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if not installed
    with pytest.raises(DataError, match=r'needs pyarrow: pip install "cnnzoo\[parquet\]"'):
        load(source, tmp_path / "cache")
