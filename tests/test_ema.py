"""ModelEma equals its definition on a toy model; batch-norm statistics averaged; exact resume."""
import copy

import pytest
import torch
from torch import nn

from cnnzoo.errors import UserError
from cnnzoo.training.ema import ModelEma

pytestmark = pytest.mark.usefixtures("one_thread")


def toy():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def train_steps(model, ema, steps, seed=1):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = model(torch.randn(8, 3, generator=gen)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update(model)


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_equals_its_definition(warmup):
    model = toy()
    ema = ModelEma(model, decay=0.9, warmup=warmup)
    expected = {k: v.clone().double() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    for t in range(6):
        model(torch.randn(8, 3, generator=gen)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        ema.update(model)
        d = min(0.9, (1 + t) / (10 + t)) if warmup else 0.9
        for k, v in model.state_dict().items():
            if v.is_floating_point():  # weights and BN running statistics: averaged
                expected[k] = d * expected[k] + (1 - d) * v.double()
            else:  # num_batches_tracked: copied
                expected[k] = v.double()
    for k, v in ema.module.state_dict().items():
        torch.testing.assert_close(v.double(), expected[k], rtol=1e-5, atol=1e-6)
    assert ema.updates == 6
    assert ema.module.state_dict()["1.num_batches_tracked"] == 6


def test_the_average_takes_no_gradients_and_stays_in_eval_mode():
    model = toy()
    ema = ModelEma(model, decay=0.99)
    assert not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_state_dict_resumes_exactly():
    model = toy()
    straight = ModelEma(model, decay=0.95)
    train_steps(model, straight, 4)
    # As last.pt holds them: copies (state dicts, like nn.Module's, hold references).
    saved_model, saved_ema = copy.deepcopy(model.state_dict()), copy.deepcopy(straight.state_dict())
    train_steps(model, straight, 3, seed=2)

    resumed_model = toy()
    resumed_model.load_state_dict(saved_model)
    resumed = ModelEma(resumed_model, decay=0.5)  # the decay comes back from the state too
    resumed.load_state_dict(saved_ema)
    train_steps(resumed_model, resumed, 3, seed=2)
    assert resumed.updates == straight.updates == 7 and resumed.decay == 0.95
    for a, b in zip(straight.module.state_dict().values(), resumed.module.state_dict().values()):
        assert torch.equal(a, b)


def test_bad_decay_says_so():
    with pytest.raises(UserError, match="decay"):
        ModelEma(toy(), decay=1.0)
