"""Fine-tuning helpers: frozen parameters stay bit-identical, frozen batch norm survives model.train(),
each group learns at the rate asked, gradual unfreezes on schedule, the linear probe on cached
features trains the very head the whole model would, and features are written for every image.

Models are ResNet-18 (and VGG-11) at a quarter width on 16 px images.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import cnnzoo
from cnnzoo.cli import main
from cnnzoo.data import BatchLoader, DataSplits, ImageSet, load_dataset
from cnnzoo.errors import UserError
from cnnzoo.training.config import TrainConfig
from cnnzoo.training.features import extract_features, pooled_features
from cnnzoo.training.finetune import (
    backbone_and_head,
    freeze_backbone,
    freeze_batchnorm,
    gradual_head_epochs,
    on_epoch_start,
    parameter_groups,
)
from cnnzoo.training.optim import LRSchedule, build_optimizer, group_learning_rates
from cnnzoo.training.tasks.image import evaluate_loader
from cnnzoo.training.tasks.linear_probe import LinearProbe

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def small_model(name: str = "resnet18", **args) -> nn.Module:
    torch.manual_seed(0)
    return cnnzoo.create_model(name, width_mult=0.25, num_classes=3, **args)


def snapshot(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def train_steps(model: nn.Module, optimizer, steps: int = 3, size: int = 16) -> None:
    model.train()
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(8, 3, size, size, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


# -------------------------------------------------------------------------------- which parameters

def test_backbone_and_head_split_by_the_classifier():
    for name in ("resnet18", "vgg11"):
        model = small_model(name)
        backbone, head = backbone_and_head(model)
        assert [id(p) for p in head] == [id(p) for p in model.get_classifier().parameters()]
        assert len(backbone) + len(head) == len(list(model.parameters()))
    with pytest.raises(UserError, match="no classifier head"):
        backbone_and_head(nn.Sequential(nn.Linear(2, 2)))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_frozen_parameters_are_bit_identical_after_steps(optimizer):
    model = small_model()
    opt = build_optimizer(model, optimizer, lr=0.1, weight_decay=0.05)  # built before freezing: gradual's way
    assert on_epoch_start(model, opt, "gradual", epoch=0, epochs=10) is None
    backbone, head = backbone_and_head(model)
    frozen_before, head_before = snapshot(backbone), snapshot(head)
    train_steps(model, opt)
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, backbone))  # weight decay and momentum too
    assert not any(torch.equal(a, b) for a, b in zip(head_before, head))
    # the switch: the same optimizer now trains the backbone
    assert gradual_head_epochs(10) == 2
    assert on_epoch_start(model, opt, "gradual", epoch=1, epochs=10) is None
    assert on_epoch_start(model, opt, "gradual", epoch=2, epochs=10) == "unfroze the backbone at epoch 3"
    assert on_epoch_start(model, opt, "gradual", epoch=3, epochs=10) is None
    train_steps(model, opt)
    assert not any(torch.equal(a, b) for a, b in zip(frozen_before, backbone))


def test_gradual_is_a_function_of_the_epoch_alone():
    model = small_model()
    opt = build_optimizer(model, "sgd", lr=0.1, weight_decay=0.0)
    for epoch, trains_backbone in [(4, True), (0, False), (1, True), (0, False)]:  # as a resumed run jumps
        on_epoch_start(model, opt, "gradual", epoch=epoch, epochs=5)
        assert all(p.requires_grad == trains_backbone for p in backbone_and_head(model)[0])
    for mode in ("full", "linear", None):
        assert on_epoch_start(model, opt, mode, epoch=0, epochs=5) is None
    frozen_first = small_model()
    freeze_backbone(frozen_first)  # the mistake: frozen before the optimizer was built, so not in it
    with pytest.raises(RuntimeError, match="not in the optimizer"):
        on_epoch_start(frozen_first, build_optimizer(frozen_first, "sgd", 0.1, 0.0), "gradual", 0, 5)


def test_linear_leaves_the_backbone_out_of_the_optimizer():
    model = small_model()
    freeze_backbone(model)
    groups = parameter_groups(model, weight_decay=0.01)
    assert [g["name"] for g in groups] == ["head/decay", "head/no_decay"]
    freeze_backbone(model, frozen=False)
    assert [g["name"] for g in parameter_groups(model, 0.01)] == [
        "backbone/decay", "backbone/no_decay", "head/decay", "head/no_decay"]


# ----------------------------------------------------------------------------------- frozen BN

def test_frozen_batchnorm_keeps_statistics_and_affine_through_train():
    model = small_model()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert freeze_batchnorm(model) == len(bns) > 0
    stats_before = {k: v.clone() for k, v in model.state_dict().items() if "norm" in k}
    opt = build_optimizer(model, "sgd", lr=0.1, weight_decay=0.01)
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in held for bn in bns for p in bn.parameters())  # never to learn: not in it
    on_epoch_start(model, opt, "gradual", epoch=5, epochs=5)  # unfreezing the backbone leaves BN frozen
    model.train()
    assert all(not bn.training for bn in bns) and model.training
    train_steps(model, opt, steps=4)
    after = model.state_dict()
    assert all(torch.equal(stats_before[k], after[k]) for k in stats_before)  # running stats, weights, counts
    assert isinstance(bns[0], nn.BatchNorm2d)
    # the same names and tensors: a checkpoint loads into an unfrozen model
    plain = small_model()
    plain.load_state_dict(model.state_dict())
    assert copy.deepcopy(model).stem.norm.training is False


# --------------------------------------------------------------------------- learning rates per group

def test_each_group_learns_at_its_rate():
    model = small_model()
    opt = build_optimizer(model, "sgd", lr=0.1, weight_decay=0.0, backbone_lr_scale=0.1)
    schedule = LRSchedule("cosine", peak_lr=0.1, total_steps=10, warmup_steps=2)
    assert schedule.apply(opt) == pytest.approx(0.05)
    rates = {g["name"]: g["lr"] for g in opt.param_groups}
    assert rates == pytest.approx({"backbone/decay": 0.005, "backbone/no_decay": 0.005,
                                   "head/decay": 0.05, "head/no_decay": 0.05})
    assert group_learning_rates(opt) == pytest.approx({"backbone": 0.005, "head": 0.05})
    # ...and the step really moves each part by its rate: Nesterov's first step is (1 + momentum) x grad
    before = {id(p): p.detach().clone() for p in model.parameters()}
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    opt.zero_grad()
    model.train()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    for group in opt.param_groups:
        for p in group["params"]:
            moved = before[id(p)] - p.detach()
            torch.testing.assert_close(moved, group["lr"] * 1.9 * p.grad, rtol=1e-4, atol=1e-7)
    assert {g["weight_decay"] for g in opt.param_groups if g["name"].endswith("no_decay")} == {0.0}


def test_models_without_a_head_get_plain_groups():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert [g["name"] for g in parameter_groups(net, 0.01)] == ["all/decay", "all/no_decay"]
    with pytest.raises(UserError, match="backbone-lr-scale"):
        parameter_groups(net, 0.01, backbone_lr_scale=0.1)


# ------------------------------------------------------------------------------------ linear probe

def tiny_data(n_train: int = 40, n_val: int = 12, size: int = 16) -> DataSplits:
    rng = np.random.default_rng(0)

    def split(n):
        return ImageSet(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8), rng.integers(0, 3, n))

    return DataSplits(train=split(n_train), val=split(n_val), test=None, class_names=["a", "b", "c"],
                      image_size=size, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), source="tiny")


def test_linear_probe_on_cached_features_trains_the_same_head():
    data = tiny_data()
    config = TrainConfig(model="resnet18", batch_size=8, seed=3, label_smoothing=0.1, channels_last=False)
    model = small_model(drop_rate=0.0)
    reference = copy.deepcopy(model)
    for m in (model, reference):
        freeze_backbone(m)
    task = LinearProbe(data)
    train_loader, val_loader = task.loaders(config, torch.device("cpu"), model)
    plain = BatchLoader(data.train, 8, shuffle=True, seed=3, drop_last=True, mean=data.mean, std=data.std)
    assert len(train_loader) == len(plain) == 5
    for epoch in range(3):  # the same batches as the image loader, epoch after epoch
        assert [a.tolist() for a in train_loader.batch_indices(epoch)] == \
            [b.tolist() for b in plain.batch_indices(epoch)]

    cached_opt = build_optimizer(model, "sgd", lr=0.5, weight_decay=5e-4)
    plain_opt = build_optimizer(reference, "sgd", lr=0.5, weight_decay=5e-4)
    for epoch in range(3):
        train_loader.set_epoch(epoch)
        plain.set_epoch(epoch)
        model.train()  # as the trainer does: only the classifier runs, so nothing in the backbone moves
        reference.eval()  # the frozen backbone as the features saw it: eval mode, no augmentation
        for features_batch, (x, y) in zip(train_loader, plain):
            loss, _ = task.loss(model, features_batch, config)
            cached_opt.zero_grad(set_to_none=True)
            loss.backward()
            cached_opt.step()
            plain_loss = F.cross_entropy(reference(x), y, label_smoothing=config.label_smoothing)
            plain_opt.zero_grad(set_to_none=True)
            plain_loss.backward()
            plain_opt.step()
            assert features_batch[1].tolist() == y.tolist()
    ours, theirs = model.get_classifier(), reference.get_classifier()
    assert (ours.weight - theirs.weight).abs().max() <= 1e-5 and (ours.bias - theirs.bias).abs().max() <= 1e-5
    assert not torch.equal(ours.weight, small_model().get_classifier().weight)  # it did learn

    cached = task.evaluate(model, val_loader, torch.device("cpu"), amp=False)
    full = evaluate_loader(model, BatchLoader(data.val, 64, shuffle=False, mean=data.mean, std=data.std),
                           torch.device("cpu"))
    assert cached["acc"] == full["acc"] and cached["loss"] == pytest.approx(full["loss"], abs=1e-5)


def test_linear_probe_computes_features_when_first_used():
    # a resumed run restores the weights after making its loaders: the features must be the restored ones
    data = tiny_data()
    config = TrainConfig(model="resnet18", batch_size=8, channels_last=False)
    model = small_model()
    task = LinearProbe(data)
    train_loader, _ = task.loaders(config, torch.device("cpu"), model)
    restored = small_model()
    with torch.no_grad():
        for p in restored.parameters():
            p.mul_(0.5)
    model.load_state_dict(restored.state_dict())
    x, _ = next(iter(train_loader))
    expected, _ = pooled_features(model, BatchLoader(data.train, 64, shuffle=False, mean=data.mean, std=data.std))
    index = train_loader.batch_indices(0)[0]
    torch.testing.assert_close(x, expected[torch.from_numpy(index)])
    assert model.training  # the mode it had is given back


# ------------------------------------------------------------------------------------------ features

@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "pets"
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (20, 20), (c * 200, i * 50, 100)).save(root / name / f"{name}{i}.png")
    return root


def test_features_of_every_image_with_labels_and_file_names(tmp_path, folder):
    model = small_model()
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    cache = tmp_path / "cache"
    result = extract_features("resnet18", folder, weights=str(weights), width_mult=0.25, image_size=16,
                              cache_dir=str(cache), progress=False, device="cpu")
    out = result.save(tmp_path / "f.npz")
    saved = np.load(out)  # no pickle needed
    assert sorted(result.splits) == ["train", "val"]
    files = list(saved["train_files"]) + list(saved["val_files"])
    assert sorted(files) == sorted(f"{c}/{c}{i}.png" for c in ("cat", "dog") for i in range(5))
    assert list(saved["class_names"]) == ["cat", "dog"]
    for split in ("train", "val"):
        labels = saved[f"{split}_labels"]
        assert [f.split("/")[0] for f in saved[f"{split}_files"]] == [["cat", "dog"][i] for i in labels]
        assert saved[f"{split}_features"].shape == (len(labels), model.num_features)
    data = load_dataset(str(folder), image_size=16, cache_dir=str(cache), progress=False)
    expected, _ = pooled_features(model, BatchLoader(data.val, 64, shuffle=False, mean=data.mean, std=data.std))
    np.testing.assert_allclose(saved["val_features"], expected.numpy(), atol=1e-5)
    assert str(saved["weights"]) == str(weights) and int(saved["image_size"]) == 16


def test_features_command(tmp_path, folder, capsys):
    out = tmp_path / "feats.npz"
    assert main(["features", "resnet18", "--data", str(folder), "--out", str(out), "--width-mult", "0.25",
                 "--image-size", "16", "--split", "val", "--cache-dir", str(tmp_path / "cache"),
                 "--device", "cpu"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert sorted(k for k in np.load(out).files if k.startswith("val")) == ["val_features", "val_files", "val_labels"]
    assert not list(tmp_path.glob(".*tmp*"))
    assert main(["features", "nosuch.pt", "--out", str(out)]) == 2
    assert "neither a model name" in capsys.readouterr().err
    assert main(["features", "wavenet_small", "--data", str(folder), "--out", str(out)]) == 2
    assert "'wavenet_small' is a sequence model; features are an image classifier's" in capsys.readouterr().err


def test_linear_probe_runs_without_augmentation():
    task = LinearProbe(tiny_data())
    resolved = task.resolve(TrainConfig(model="resnet18"), small_model(), "cpu")
    assert resolved.augment == "none"
    with pytest.raises(UserError, match="without augmentation"):
        task.resolve(TrainConfig(model="resnet18", augment="light"), small_model(), "cpu")
