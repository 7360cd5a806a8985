"""evaluate and predict on a saved checkpoint: same numbers as training saw, files written, bad input reported."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnzoo.cli import main
from cnnzoo.data import BatchLoader, load_dataset
from cnnzoo.training import TrainConfig, build_model_from_checkpoint, evaluate, load_checkpoint, predict, train

DATA = "synthetic:classes=4,n=256,size=16"


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(model="resnet18", model_args={"width_mult": 0.25}, data=DATA, epochs=3, out_dir=str(out),
          progress=False, device="cpu", threads=1)
    return out


@pytest.fixture(scope="module")
def val_images(run_dir, tmp_path_factory):
    """The validation split written out as PNG files in class folders: root/<class>/<i>.png."""
    data = load_dataset(DATA, progress=False)
    root = tmp_path_factory.mktemp("val_folder")
    paths = []
    for i, (img, label) in enumerate(zip(data.val.images, data.val.labels)):
        folder = root / data.class_names[label]
        folder.mkdir(exist_ok=True)
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray(img.transpose(1, 2, 0)).save(paths[-1])
    return root, paths, data


def test_evaluate_reproduces_the_validation_accuracy_and_writes_the_confusion_matrix(run_dir, tmp_path):
    best = load_checkpoint(run_dir / "best.pt")
    result = evaluate(run_dir / "best.pt", out_dir=tmp_path, device="cpu")
    assert result.split == "val" and result.num_images == 52
    assert result.accuracy == pytest.approx(best.best_score, abs=1e-9)  # the number training logged
    assert result.top5_accuracy is None  # 4 classes: top-5 would always be 1
    matrix = np.array(result.confusion_matrix)
    assert matrix.shape == (4, 4) and matrix.sum() == 52 and np.trace(matrix) / 52 == pytest.approx(result.accuracy)
    assert [r["support"] for r in result.per_class] == list(matrix.sum(1))
    recall0 = matrix[0, 0] / matrix[0].sum()
    assert result.per_class[0]["recall"] == pytest.approx(recall0)
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] == result.accuracy


def test_evaluate_on_a_folder_of_the_same_images_gives_the_same_accuracy(run_dir, val_images, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("CNNZOO_CACHE", str(tmp_path / "cache"))
    root, _, _ = val_images
    on_split = evaluate(run_dir / "best.pt", device="cpu", out_dir=tmp_path / "a")
    on_folder = evaluate(run_dir / "best.pt", str(root), device="cpu", out_dir=tmp_path / "b")
    assert on_folder.split == "all" and on_folder.num_images == on_split.num_images
    assert on_folder.accuracy == pytest.approx(on_split.accuracy)


def test_predict_matches_the_model_on_the_training_pipeline(run_dir, val_images):
    _, paths, data = val_images
    ckpt = load_checkpoint(run_dir / "best.pt")
    predictions = predict(run_dir / "best.pt", paths[:8], top_k=3, device="cpu")

    model = build_model_from_checkpoint(ckpt)
    prep = ckpt.image.preprocessing
    x, _ = next(iter(BatchLoader(data.val, 8, shuffle=False, mean=prep.mean, std=prep.std)))
    with torch.no_grad():
        expected = torch.softmax(model(x), 1)
    for p, probs in zip(predictions, expected):
        assert p.error is None and len(p.top) == 3
        top_class, top_prob = p.top[0]
        assert top_class == ckpt.image.class_names[int(probs.argmax())]
        assert top_prob == pytest.approx(float(probs.max()), abs=1e-5)
        assert [q for _, q in p.top] == sorted((q for _, q in p.top), reverse=True)


def test_predict_cli_reports_unreadable_images_and_still_predicts_the_rest(run_dir, val_images, tmp_path, capsys):
    _, paths, _ = val_images
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    missing = tmp_path / "missing.png"
    code = main(["predict", str(run_dir / "best.pt"), str(paths[0]), str(broken), str(missing), str(paths[1]),
                 "--json", "--top-k", "2", "--device", "cpu"])
    assert code == 1
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [len(r.get("predictions", [])) for r in rows] == [2, 0, 0, 2]
    assert "cannot read" in rows[1]["error"] and "does not exist" in rows[2]["error"]
    assert "broken.jpg" in captured.err

    assert main(["predict", str(run_dir / "best.pt"), str(paths[0]), "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert str(paths[0]) in table and "1. class" in table


def test_evaluate_cli_prints_metrics(run_dir, tmp_path, capsys):
    assert main(["evaluate", str(run_dir / "last.pt"), "--out", str(tmp_path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "precision" in out and "class3" in out
    assert (tmp_path / "confusion_matrix.png").exists()


def test_missing_corrupt_and_foreign_checkpoints_are_clear_errors(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    cases = [
        (["evaluate", str(tmp_path / "nope.pt")], "does not exist"),
        (["evaluate", str(tmp_path)], "it is a folder"),
        (["evaluate", str(corrupt)], "corrupt"),
        (["evaluate", str(foreign)], "not a cnnzoo checkpoint"),
        (["predict", str(tmp_path / "nope.pt"), "x.png"], "does not exist"),
        (["predict", str(corrupt), "x.png"], "corrupt"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert expected in err and argv[1] in err, (argv, err)


def test_evaluate_rejects_data_with_other_classes(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNZOO_CACHE", str(tmp_path / "cache"))
    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (20, 20), (i * 90, 40, 200)).save(tmp_path / "pets" / name / f"{i}.png")
    assert main(["evaluate", str(run_dir / "best.pt"), "--data", str(tmp_path / "pets"), "--device", "cpu"]) == 2
    assert "not trained on" in capsys.readouterr().err


def test_a_sequence_checkpoint_is_refused_with_what_to_use_instead():
    from cnnzoo.checkpoint import Checkpoint
    from cnnzoo.errors import UserError

    state = Checkpoint(model_name="wavenet_small", model_args={}, model_state={}, task="sequence", fields=None,
                       config=TrainConfig(model="wavenet_small"), history=[], monitor="val_loss", best_score=None)
    with pytest.raises(UserError, match="sequence model.*cnnzoo forecast"):
        evaluate(state)
    with pytest.raises(UserError, match="sequence model.*cnnzoo generate"):
        predict(state, ["x.png"])
