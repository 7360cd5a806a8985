"""evaluate never scores a model on the images it trained on: the test split when there is one, else
the validation split of the training data; the output names the split and its size."""
import json

import numpy as np
import pytest
from PIL import Image

from cnnzoo.cli import main
from cnnzoo.data import load_dataset
from cnnzoo.errors import UserError
from cnnzoo.training import evaluate, load_checkpoint, train

DATA = "synthetic:classes=3,n=36,size=16"
TINY = dict(model="mobilenet_v1", model_args={"width_mult": 0.25}, epochs=1, batch_size=16, progress=False,
            device="cpu", threads=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, cache):
    """A model trained on a folder with train/ (val carved from it) and test/."""
    root = tmp_path_factory.mktemp("cifar_like")
    rng = np.random.default_rng(1)
    for split, count in (("train", 10), ("test", 5)):
        for label, name in enumerate(("class0", "class1", "class2")):  # as synthetic names them
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (18, 18, 3), dtype=np.uint8)
                pixels[..., label] = 230
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    out = tmp_path_factory.mktemp("run")
    train(data=str(root), image_size=16, out_dir=str(out), cache_dir=str(cache), **TINY)
    return root, out / "best.pt"


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    train(data=DATA, out_dir=str(out), seed=3, **TINY)
    return out / "best.pt"


def test_the_training_folder_given_again_is_scored_on_its_test_split_only(folder_run, tmp_path):
    root, best = folder_run
    for data in (None, str(root)):  # its own data, named or not
        result = evaluate(best, data, out_dir=tmp_path, device="cpu")
        assert result.split == "test" and result.num_images == 15  # 3 classes x 5: not the 45 of all
        assert "neither to train nor to choose" in result.split_reason
        low, high = result.accuracy_interval
        assert low <= result.accuracy <= high


def test_the_splits_holding_training_images_are_refused_on_the_training_data(folder_run):
    root, best = folder_run
    for split in ("train", "all"):
        with pytest.raises(UserError, match="images it learnt from"):
            evaluate(best, str(root), split=split, device="cpu")
    val = evaluate(best, split="val", device="cpu", out_dir=None)
    assert val.split == "val" and val.accuracy == pytest.approx(load_checkpoint(best).best_score)


def test_data_without_a_test_split_given_again_is_scored_on_the_validation_images(synthetic_run, tmp_path):
    # Named again (the bug: "all" of it, training images included); loaded with the run's seed, so the
    # validation images are exactly the ones training held out.
    result = evaluate(synthetic_run, DATA, out_dir=tmp_path, device="cpu")
    held_out = load_dataset(DATA, seed=3, progress=False).val
    assert result.split == "val" and result.num_images == len(held_out)
    assert result.accuracy == pytest.approx(load_checkpoint(synthetic_run).best_score)
    assert "used to choose the best epoch" in result.split_reason


def test_other_data_is_scored_whole_and_a_folder_with_test_on_its_test_split(folder_run, synthetic_run, tmp_path,
                                                                           cache, monkeypatch):
    monkeypatch.setenv("CNNZOO_CACHE", str(cache))
    root, _ = folder_run
    # A folder the synthetic model never saw, with test/: its test split by default.
    assert evaluate(synthetic_run, str(root), device="cpu", out_dir=tmp_path).split == "test"
    assert evaluate(synthetic_run, str(root), split="all", device="cpu", out_dir=tmp_path).num_images == 45


def test_the_cli_says_which_split_and_how_many_images(folder_run, tmp_path, capsys):
    root, best = folder_run
    assert main(["evaluate", str(best), "--device", "cpu", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"scored on the test split of {root}: 15 images (")
    assert "95 % interval" in out
    assert main(["evaluate", str(best), "--split", "train", "--device", "cpu"]) == 2
    assert "images it learnt from" in capsys.readouterr().err
    assert main(["evaluate", str(best), "--json", "--device", "cpu", "--out", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["split"] == "test" and doc["num_images"] == 15 and len(doc["accuracy_interval"]) == 2
