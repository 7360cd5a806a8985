"""Mixup and CutMix: soft targets sum to one, pixels and targets agree, loss and accuracy bookkeeping."""
import pytest
import torch
import torch.nn.functional as F

from cnnzoo.errors import UserError
from cnnzoo.training.mixing import Mixing, mixed_correct, mixing_generator, soft_target_cross_entropy, soft_targets

pytestmark = pytest.mark.usefixtures("one_thread")


def batch(b=8, classes=5):
    y = torch.arange(b) % classes
    # Each image is filled with its own index: what was pasted from where shows in the pixels.
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, 16, 16).clone()
    return x, y


@pytest.mark.parametrize("mixing", [Mixing(mixup_alpha=0.2), Mixing(cutmix_alpha=1.0),
                                    Mixing(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1),
                                    Mixing(mixup_alpha=0.2, prob=0.0)], ids=repr)
def test_targets_sum_to_one_and_follow_the_generator(mixing):
    x, y = batch()
    for seed in range(5):
        out = mixing(x, y, 5, mixing_generator(seed, 0))
        again = mixing(x, y, 5, mixing_generator(seed, 0))
        assert out.x.shape == x.shape and out.targets.shape == (8, 5)
        torch.testing.assert_close(out.targets.sum(1), torch.ones(8))
        assert (out.targets >= 0).all()
        assert torch.equal(out.x, again.x) and torch.equal(out.targets, again.targets)


def test_mixup_mixes_pixels_and_targets_by_the_same_share():
    x, y = batch()
    out = Mixing(mixup_alpha=1.0)(x, y, 5, mixing_generator(0, 1))
    assert out.kind == "mixup" and 0 < out.lam < 1
    partner = ((out.x[:, 0, 0, 0] - out.lam * x[:, 0, 0, 0]) / (1 - out.lam)).round().long()
    expected = out.lam * F.one_hot(y, 5) + (1 - out.lam) * F.one_hot(y[partner], 5)
    torch.testing.assert_close(out.targets, expected.float())


def test_cutmix_targets_are_the_pasted_area():
    x, y = batch()
    for seed in range(5):
        out = Mixing(cutmix_alpha=1.0)(x, y, 5, mixing_generator(seed, 0))
        own = (out.x[:, 0] == x[:, 0]).flatten(1).float().mean(1)  # share of each image still its own
        moved = own < 1
        torch.testing.assert_close(own[moved], torch.full((int(moved.sum()),), out.lam))


def test_label_smoothing_composes_and_the_loss_is_cross_entropy():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    targets = soft_targets(y, 4, smoothing=0.1)
    torch.testing.assert_close(soft_target_cross_entropy(logits, targets),
                               F.cross_entropy(logits, y, label_smoothing=0.1))
    out = Mixing(mixup_alpha=0.4, label_smoothing=0.1)(torch.zeros(6, 3, 4, 4), y, 4, mixing_generator(1, 0))
    torch.testing.assert_close(out.targets.sum(1), torch.ones(6))
    assert out.targets.min() >= 0.1 / 4 - 1e-6


def test_accuracy_counts_the_dominant_label():
    targets = torch.tensor([[0.7, 0.3, 0.0], [0.4, 0.6, 0.0], [0.0, 0.45, 0.55]])
    logits = torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert mixed_correct(logits, targets).item() == 2


def test_generators_differ_by_epoch_and_from_the_loaders():
    from cnnzoo.data.loader import epoch_generator

    draws = [torch.rand(4, generator=g) for g in (mixing_generator(0, 0), mixing_generator(0, 1),
                                                   epoch_generator(0, 0))]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_bad_settings_say_which():
    with pytest.raises(UserError, match="mixup_alpha"):
        Mixing(mixup_alpha=-1)
    with pytest.raises(UserError, match="prob"):
        Mixing(prob=1.5)
