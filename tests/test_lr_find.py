"""The learning-rate range test: the suggestion on a problem whose good rate is known; state restored."""
import numpy as np
import pytest
import torch
from torch import nn

from cnnzoo.errors import UserError
from cnnzoo.training.lr_find import LrFindResult, centred_smooth, lr_find, suggest

pytestmark = pytest.mark.usefixtures("one_thread")


def least_squares(scale: float, seed: int = 0):
    """Linear regression on features of variance ``scale**2``: the mean-squared-error loss has
    curvature 2 * scale**2 in every direction, so plain SGD's best constant rate is 1 / (2 * scale**2)
    and it diverges above twice that (any convex-optimisation text, e.g. Bottou, Curtis & Nocedal
    2018, §4)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2048, 10, generator=gen) * scale
    y = x @ torch.randn(10, 1, generator=gen) / scale + 0.1 * torch.randn(2048, 1, generator=gen)
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 2048, 64)]
    torch.manual_seed(seed)
    model = nn.Linear(10, 1)
    return model, batches, torch.optim.SGD(model.parameters(), lr=0.1)


def mse(model, batch):
    return nn.functional.mse_loss(model(batch[0]), batch[1])


@pytest.mark.parametrize("scale", [1.0, 10.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_suggestion_lands_in_the_decade_below_the_best_rate(scale, seed):
    model, batches, optimizer = least_squares(scale, seed)
    result = lr_find(model, batches, mse, optimizer)
    best = 1 / (2 * scale ** 2)
    assert result.suggestion is not None, result.why
    assert best / 10 <= result.suggestion <= best, (result.suggestion, best, result.why)
    assert result.stopped == "diverged" and len(result.lrs) == len(result.losses) == len(result.smoothed)


def test_model_optimizer_and_random_state_are_restored():
    model, batches, optimizer = least_squares(1.0)
    nn.Module.add_module(model, "drop", nn.Dropout())  # not used: only its mode must come back
    model.eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    lr_find(model, batches, mse, optimizer, num_steps=20)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert optimizer.state_dict()["state"] == {} and optimizer.param_groups[0]["lr"] == 0.1
    assert torch.equal(torch.get_rng_state(), rng) and not model.training


def test_an_early_spike_does_not_decide():
    """A one-batch spike early on: the steepest-gradient rule of Lightning and pytorch-lr-finder
    (``np.gradient(losses).argmin()``) picks the batch after it; the suggestion here does not move."""
    lrs = np.logspace(-7, 1, 100)
    log_lr = np.log10(lrs)
    losses = 2.3 - 2.0 / (1 + np.exp(-(log_lr + 2) * 3)) + np.where(log_lr > -0.5, (log_lr + 0.5) * 8, 0)
    spiked = losses.copy()
    spiked[10] += 3.0
    assert np.gradient(spiked).argmin() == 11  # the naive rule is fooled
    clean = suggest(lrs, losses, centred_smooth(log_lr, losses))[0]
    fooled = suggest(lrs, spiked, centred_smooth(log_lr, spiked))[0]
    # The curve turns up at 10**-0.5: a tenth of that, give or take the smoothing's width.
    assert clean == fooled and 10 ** -1.8 <= clean <= 10 ** -1.2


def test_no_descent_gives_no_suggestion_and_says_why():
    lrs = np.logspace(-7, 1, 60)
    noise = np.random.default_rng(0).normal(0, 0.05, 60) + 2.0
    suggestion, why = suggest(lrs, noise, centred_smooth(np.log10(lrs), noise))
    assert suggestion is None and "noise" in why


def test_result_round_trips_and_plots(tmp_path):
    model, batches, optimizer = least_squares(1.0)
    result = lr_find(model, batches, mse, optimizer, num_steps=40)
    assert LrFindResult.from_dict(result.to_dict()) == result
    path = result.plot(tmp_path / "lr.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert "suggested learning rate" in str(result)


def test_bad_range_is_a_user_error():
    model, batches, optimizer = least_squares(1.0)
    with pytest.raises(UserError, match="start_lr"):
        lr_find(model, batches, mse, optimizer, start_lr=1.0, end_lr=0.1)
