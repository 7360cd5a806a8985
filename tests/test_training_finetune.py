"""Fine-tuning through `cnnzoo train`: weights from a file, a new head, the backbone at its own rate,
linear probing on a frozen backbone, gradual unfreezing (exact on resume) and frozen batch norm."""
import json

import pytest
import torch

from cnnzoo.errors import UserError
from cnnzoo.training import load_checkpoint, train
from cnnzoo.training import trainer as trainer_module

PRETRAIN = dict(model="resnet18", model_args={"width_mult": 0.25}, data="synthetic:classes=4,n=128,size=16",
                progress=False, device="cpu", threads=1, batch_size=32)
TARGET = dict(PRETRAIN, data="synthetic:classes=3,n=96,size=16", batch_size=16, seed=1)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    train(epochs=2, out_dir=str(out), **PRETRAIN)
    return str(out / "best.pt")


def backbone(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("head.")}


def test_full_fine_tuning_replaces_the_head_and_runs_the_backbone_slower(pretrained, tmp_path):
    with pytest.warns(UserWarning, match="classifier"):  # 4 classes in the file, 3 in the data: a new head
        result = train(epochs=2, weights=pretrained, backbone_lr_scale=0.1, out_dir=str(tmp_path), **TARGET)
    config = result.config
    assert config.finetune == "full"  # the default with weights
    assert result.model.num_classes == 3
    for record in result.history:  # both rates are logged, and the backbone's is the tenth asked for
        rates = record.lr_groups
        assert rates["backbone"] == pytest.approx(0.1 * rates["head"]) and rates["head"] == record.lr
    saved = json.loads((tmp_path / "history.json").read_text())
    assert "lr_groups" in saved["epochs"][0]


def test_linear_probe_trains_the_head_only(pretrained, tmp_path):
    start = load_checkpoint(pretrained).model_state
    with pytest.warns(UserWarning, match="classifier"):
        result = train(epochs=3, weights=pretrained, finetune="linear", out_dir=str(tmp_path), **TARGET)
    after = load_checkpoint(tmp_path / "last.pt").model_state
    assert all(torch.equal(start[k], after[k]) for k in backbone(after) if after[k].is_floating_point())
    assert result.config.augment == "none" and result.best_val_acc > 0


def test_gradual_unfreezes_once_and_resumes_exactly(pretrained, tmp_path, monkeypatch):
    args = dict(epochs=5, weights=pretrained, finetune="gradual", **TARGET)
    with pytest.warns(UserWarning):
        straight = train(out_dir=str(tmp_path / "straight"), **args)
    events = [r.event for r in straight.history]
    assert events == [None, "unfroze the backbone at epoch 2", None, None, None]

    real_epoch = trainer_module._train_one_epoch
    calls = []

    def killed_in_third_epoch(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_epoch(*a, **k)

    monkeypatch.setattr(trainer_module, "_train_one_epoch", killed_in_third_epoch)
    with pytest.warns(UserWarning):
        cut = train(out_dir=str(tmp_path / "cut"), **args)
    assert cut.stopped_reason == "interrupted" and len(cut.history) == 2
    monkeypatch.setattr(trainer_module, "_train_one_epoch", real_epoch)
    train(out_dir=str(tmp_path / "cut"), resume=True, **args)  # last.pt holds the weights: none read again
    a = load_checkpoint(tmp_path / "straight" / "last.pt").model_state
    b = load_checkpoint(tmp_path / "cut" / "last.pt").model_state
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_freeze_bn_keeps_the_statistics_of_the_weights(pretrained, tmp_path):
    start = load_checkpoint(pretrained).model_state
    with pytest.warns(UserWarning):
        train(epochs=2, weights=pretrained, freeze_bn=True, out_dir=str(tmp_path), **TARGET)
    after = load_checkpoint(tmp_path / "last.pt").model_state
    stats = [k for k in after if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(start[k], after[k]) for k in stats)


def test_compare_pits_scratch_against_pretrained_weights(pretrained, tmp_path):
    from cnnzoo.compare import LatencySettings, compare

    specs = ["resnet18:width_mult=0.25", f"resnet18:width_mult=0.25,weights={pretrained}"]
    with pytest.warns(UserWarning, match="classifier"):
        result = compare(specs, out_dir=tmp_path, data=TARGET["data"], epochs=1, batch_size=16, device="cpu",
                         threads=1, progress=False, log=lambda line: None,
                         latency=LatencySettings(repeats=1, warmup=0, batch_repeats=1))
    scratch, tuned = result.records
    assert scratch["status"] == tuned["status"] == "done"
    assert scratch["settings"]["weights"] is None and tuned["settings"]["weights"] == pretrained
    assert tuned["settings"]["finetune"] == "full"


def test_resuming_a_fine_tuning_run_does_not_need_the_starting_weights_again(pretrained, tmp_path):
    import shutil

    copy = tmp_path / "start.pt"
    shutil.copy(pretrained, copy)
    with pytest.warns(UserWarning):
        train(epochs=1, weights=str(copy), out_dir=str(tmp_path / "run"), **TARGET)
    copy.unlink()  # gone (or, for --weights torchvision, offline): last.pt is all a resume needs
    result = train(epochs=2, weights=str(copy), resume=True, out_dir=str(tmp_path / "run"), **TARGET)
    assert len(result.history) == 2


def test_linear_probe_refuses_a_classifier_that_is_not_linear_on_pooled_features(tmp_path):
    # SqueezeNet's classifier is a 1x1 convolution (and ReLU) before the pooling (Iandola et al. 2016)
    with pytest.raises(UserError, match="squeezenet1_1's classifier is a Conv2d.*--finetune full"):
        train(model="squeezenet1_1", data="synthetic:classes=3,n=24,size=32", finetune="linear", epochs=1,
              weights=None, out_dir=str(tmp_path), progress=False, device="cpu", threads=1, batch_size=8)
