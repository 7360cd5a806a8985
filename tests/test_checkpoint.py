"""The checkpoint format: the committed version-1 files read through the one migration, a save/load
round trip, the typed records, and a layout check that no module but ``checkpoint.py`` reads a
checkpoint by string key.

The version-1 fixtures in ``tests/fixtures`` were written by the last release that wrote version 1
(``tests/fixtures/make_v1_checkpoints.py`` says how): a MobileNetV1 x0.25 image classifier on
synthetic 16 px data, and a tiny WaveNet on a tone (audio) and on a monthly CSV series.
"""
from __future__ import annotations

import ast
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnzoo.checkpoint import (
    VERSION,
    AudioFields,
    Checkpoint,
    EpochRecord,
    ImageFields,
    SeriesFields,
    load_checkpoint,
    save_checkpoint,
)
from cnnzoo.errors import UserError
from cnnzoo.preprocessing import Preprocessing
from cnnzoo.training import evaluate, predict, train

FIXTURES = Path(__file__).parent / "fixtures"
SRC = Path(__file__).resolve().parents[1] / "src" / "cnnzoo"


def fixture(kind: str, which: str) -> Path:
    return FIXTURES / f"v1-{kind}-{which}.pt"


def v1_dict(kind: str, which: str) -> dict:
    return torch.load(fixture(kind, which), weights_only=True)


# --- version 1, through the migration ---

@pytest.mark.parametrize("which", ["best", "last"])
def test_a_v1_image_checkpoint_keeps_its_model_classes_and_preprocessing(which):
    old, ckpt = v1_dict("img", which), load_checkpoint(fixture("img", which))
    assert ckpt.task == "image" and ckpt.model_name == "mobilenet_v1" and ckpt.model_args == old["model_args"]
    assert isinstance(ckpt.fields, ImageFields)
    assert ckpt.fields.class_names == tuple(old["class_names"])
    prep = ckpt.fields.preprocessing
    assert (prep.image_size, list(prep.mean), list(prep.std), prep.resize) == (
        old["preprocessing"]["image_size"], old["preprocessing"]["mean"], old["preprocessing"]["std"],
        old["preprocessing"]["resize"])
    assert prep.channel_order == "rgb"
    assert ckpt.monitor == old["monitor"] and ckpt.best_score == old[f"best_{old['monitor']}"]
    assert ckpt.epoch == old["epoch"] and [r.to_dict(ckpt.unit) for r in ckpt.history] == old["history"]
    new = ckpt.config.to_dict()  # options added since version 1 take their defaults
    assert {key: new[key] for key in old["config"]} == old["config"]
    assert (ckpt.resume is not None) == (which == "last")
    model = ckpt.build_model()
    assert all(torch.equal(v, old["model_state"][k]) for k, v in model.state_dict().items())


@pytest.fixture(scope="module")
def v1_image_run(tmp_path_factory) -> Path:
    """The v1 image checkpoints in a run folder, as `cnnzoo train` left them."""
    run = tmp_path_factory.mktemp("v1run")
    for which in ("best", "last"):
        shutil.copy(fixture("img", which), run / f"{which}.pt")
    return run


def test_a_v1_image_checkpoint_evaluates_and_predicts(v1_image_run, tmp_path):
    result = evaluate(v1_image_run / "best.pt", out_dir=tmp_path, device="cpu")
    # the data named in the checkpoint's config, split with its seed and validation share
    assert result.data == load_checkpoint(v1_image_run / "best.pt").config.data
    assert result.split == "val" and result.num_images > 0 and 0.0 <= result.accuracy <= 1.0
    assert result.class_names == ["class0", "class1", "class2", "class3"]
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(image)
    [prediction] = predict(v1_image_run / "best.pt", [image], top_k=2, device="cpu")
    assert prediction.error is None and len(prediction.top) == 2
    assert {name for name, _ in prediction.top} <= set(result.class_names)


def test_a_v1_last_checkpoint_resumes(v1_image_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(v1_image_run, run)
    result = train(model="mobilenet_v1", out_dir=str(run), resume=True, epochs=2, progress=False, device="cpu",
                   threads=1)
    old = load_checkpoint(fixture("img", "last"))
    assert result.stopped_reason == "completed" and len(result.history) == 2
    assert result.history[0] == old.history[0]  # the v1 epoch, carried on
    assert result.config.data == old.config.data and result.config.model_args == old.config.model_args
    again = load_checkpoint(run / "last.pt")
    assert again.epoch == 2 and again.resume is not None and again.fields == old.fields


def test_v1_sequence_checkpoints_have_typed_fields():
    for which in ("best", "last"):
        audio, old = load_checkpoint(fixture("audio", which)), v1_dict("audio", which)["sequence"]
        assert audio.task == "sequence" and audio.unit == "window" and audio.monitor == "val_loss"
        assert audio.fields == AudioFields(
            receptive_field=old["receptive_field"], window=old["window"],
            validation_context=old["validation_context"], train_samples=old["train_samples"],
            sample_rate=old["sample_rate"], quantization=old["quantization"], files=tuple(old["files"]),
            conditions=tuple(old["conditions"]))
        series, old = load_checkpoint(fixture("series", which)), v1_dict("series", which)["sequence"]
        assert isinstance(series.fields, SeriesFields)
        f = series.fields
        assert (f.columns, f.step_column, f.length, f.boundary) == (("sales",), "month", 120, 96)
        assert f.last_steps == tuple(old["last_steps"]) and list(f.mean) == old["mean"] and list(f.std) == old["std"]
        assert [list(row) for row in f.tail] == old["tail"] and len(f.tail[0]) == f.receptive_field
        assert series.history[0].val.keys() == {"loss", "mae"}
        for ckpt in (audio, series):  # the WaveNet each describes, with its weights
            model = ckpt.build_model()
            assert all(torch.equal(v, ckpt.model_state[k]) for k, v in model.state_dict().items())


# --- version 2 ---

@pytest.mark.parametrize("kind", ["img", "audio", "series"])
def test_save_and_load_give_back_the_same_record(kind, tmp_path):
    ckpt = load_checkpoint(fixture(kind, "last"))
    save_checkpoint(ckpt, tmp_path / "again.pt")
    on_disk = torch.load(tmp_path / "again.pt", weights_only=True)  # tensors and plain containers only
    assert on_disk["version"] == VERSION == 2
    again = load_checkpoint(tmp_path / "again.pt")
    plain = {f.name for f in dataclasses.fields(Checkpoint)} - {"model_state", "resume"}
    assert all(getattr(again, name) == getattr(ckpt, name) for name in plain)
    assert again.model_state.keys() == ckpt.model_state.keys()
    assert all(torch.equal(again.model_state[k], v) for k, v in ckpt.model_state.items())
    assert again.resume.scheduler == ckpt.resume.scheduler and again.resume.rng["python"] == ckpt.resume.rng["python"]
    best = ckpt.without_resume()
    save_checkpoint(best, tmp_path / "best.pt")
    assert load_checkpoint(tmp_path / "best.pt").resume is None


def test_a_newer_or_foreign_file_is_refused(tmp_path):
    newer = tmp_path / "newer.pt"
    torch.save({**v1_dict("img", "best"), "version": VERSION + 1}, newer)
    with pytest.raises(UserError, match="newer cnnzoo"):
        load_checkpoint(newer)
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(1)}, plain)
    with pytest.raises(UserError, match="not a cnnzoo checkpoint"):
        load_checkpoint(plain)


def test_history_rows_read_back_unchanged():
    for kind in ("img", "audio", "series"):
        old = v1_dict(kind, "last")
        unit = load_checkpoint(fixture(kind, "last")).unit
        for row in old["history"]:
            record = EpochRecord.from_dict(row)
            assert record.to_dict(unit) == row
            assert list(record.to_dict(unit)) == list(row)  # the columns keep their order
    record = EpochRecord.from_dict(v1_dict("img", "last")["history"][0])
    assert record.lr_groups == {"backbone": record.lr, "head": record.lr}
    assert record.metric("val_acc") == record.val["acc"] == 0.25


# --- preprocessing ---

def test_keras_modes_match_keras_preprocess_input():
    # keras/src/applications/imagenet_utils.py::_preprocess_numpy_input: "tf" x / 127.5 - 1; "caffe" RGB -> BGR
    # then minus mean [103.939, 116.779, 123.68] (0-255 units); "torch" x / 255, minus [0.485, 0.456, 0.406],
    # divided by [0.229, 0.224, 0.225].
    pixels = torch.tensor([10.0, 128.0, 250.0]).view(1, 3, 1, 1)  # R, G, B
    tf = Preprocessing.keras("tf", 224).normalize(pixels / 255)
    assert torch.allclose(tf.flatten(), pixels.flatten() / 127.5 - 1, atol=1e-6)
    caffe = Preprocessing.keras("caffe", 224).normalize(pixels / 255)
    assert torch.allclose(caffe.flatten(), torch.tensor([250 - 103.939, 128 - 116.779, 10 - 123.68]), atol=1e-4)
    torch_mode = Preprocessing.keras("torch", 224).normalize(pixels / 255)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(torch_mode.flatten(), (pixels.flatten() / 255 - mean) / std, atol=1e-6)
    with pytest.raises(UserError, match="unknown Keras"):
        Preprocessing.keras("inception", 224)


def test_preprocessing_reads_a_v1_dict_and_round_trips():
    v1 = {"image_size": 32, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2], "resize": "pad"}
    prep = Preprocessing.from_dict(v1)
    assert prep == Preprocessing(32, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), "pad", "rgb")
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    grey = prep.for_channels(1)  # RGB statistics averaged
    assert grey.mean == pytest.approx((0.4,)) and grey.std == pytest.approx((0.2,)) and grey.resize == "pad"
    with pytest.raises(UserError, match="resize"):
        Preprocessing(32, (0.5,), (0.2,), resize="squash")


# --- no module but checkpoint.py reads a checkpoint by string key ---

# What only a checkpoint holds: a string key of these, anywhere, is a checkpoint read by hand.
CHECKPOINT_ONLY_KEYS = {"model_state", "optimizer_state", "scheduler_state", "scaler_state", "rng_state",
                        "preprocessing", "best_val_acc", "best_val_loss", "epoch_complete"}
# Calls whose result is a checkpoint (a record: a string key on it, or on its to_dict(), is a read by hand).
CHECKPOINT_SOURCES = {"load_checkpoint", "read_weights_file"}


def _called(node: ast.AST) -> str:
    """The name a call calls: ``f`` for ``f(...)`` and ``m.f(...)``; "" for anything else."""
    if not isinstance(node, ast.Call):
        return ""
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def string_key_reads(source: str) -> list[str]:
    """Where ``source`` reads a checkpoint by string key: ``torch.load`` (only checkpoint.py loads
    files), a string subscript or ``.get("...")`` on what ``load_checkpoint``/``read_weights_file``
    return (or on its ``to_dict()``, or on a name bound to either), and any string key only a
    checkpoint holds."""
    tree = ast.parse(source)
    tainted: set[str] = set()

    def from_checkpoint(node: ast.AST) -> bool:
        if _called(node) in CHECKPOINT_SOURCES:
            return True
        if _called(node) == "to_dict" and from_checkpoint(node.func.value):
            return True
        return isinstance(node, ast.Name) and node.id in tainted

    for node in ast.walk(tree):  # names bound to a checkpoint, wherever in the module
        if isinstance(node, ast.Assign) and from_checkpoint(node.value):
            tainted.update(t.id for t in node.targets if isinstance(t, ast.Name))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
            found.append(f"line {node.lineno}: torch.load")
        key = receiver = None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key, receiver = node.slice.value, node.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Constant)):
            key, receiver = node.args[0].value, node.func.value
        if isinstance(key, str) and (key in CHECKPOINT_ONLY_KEYS or from_checkpoint(receiver)):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_but_checkpoint_py_reads_a_checkpoint_by_string_key():
    offenders = {str(path.relative_to(SRC)): reads for path in sorted(SRC.rglob("*.py"))
                 if path.name != "checkpoint.py" or path.parent != SRC
                 for reads in [string_key_reads(path.read_text())] if reads}
    assert not offenders, offenders


@pytest.mark.parametrize("planted", [
    "state = load_checkpoint(path)\nweights = state['model_state']",
    "config = load_checkpoint(path).to_dict().get('config')",
    "def classes(saved):\n    return saved.get('preprocessing')",
    "obj = torch.load(path, weights_only=True)",
    "fields = read_weights_file(path)['fields']",
])
def test_the_string_key_check_finds_a_planted_read(planted):
    module = (SRC / "training" / "evaluate.py").read_text()
    assert not string_key_reads(module)
    assert string_key_reads(module + "\n\n" + planted + "\n")
