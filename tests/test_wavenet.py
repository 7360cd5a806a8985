"""WaveNet: causality, the receptive field, the incremental path against the reference, training."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.data.mulaw import mu_law_decode, mu_law_encode
from cnnzoo.data.windows import SignalSet, WindowLoader
from cnnzoo.layers.causal import CausalConv1d, WaveNetBlock
from cnnzoo.models.wavenet import VARIANTS, WaveNet, WaveNetConfig
from cnnzoo.registry import ModelError, get_model_info


def tiny(output="mulaw", **overrides):
    args = dict(residual_channels=8, gate_channels=8, skip_channels=16, layers_per_stack=3, stacks=2, output=output)
    return WaveNet(**{**args, **overrides}).eval()


def random_input(model, length, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    if model.config.output == "mulaw":
        return torch.randint(0, model.config.quantization, (batch, length), generator=gen)
    return torch.randn(batch, model.config.in_channels, length, generator=gen)


def perturbed(x, t):
    x = x.clone()
    if x.is_floating_point():
        x[..., t] += 1.0
    else:
        x[..., t] = (x[..., t] + 97) % 256
    return x


# --- causality and the receptive field ---
@pytest.mark.parametrize("kernel_size, dilation", [(2, 1), (2, 4), (3, 2)])
def test_causal_conv_keeps_length_and_sees_no_future(kernel_size, dilation):
    conv = CausalConv1d(3, 5, kernel_size, dilation)
    x = torch.randn(2, 3, 40)
    t = 17
    y, y2 = conv(x), conv(perturbed(x, t))
    assert y.shape == (2, 5, 40)
    assert torch.equal(y[..., :t], y2[..., :t])
    changed = (y - y2).abs().amax((0, 1)) > 0
    # the perturbation reaches exactly the outputs t, t + d, ..., t + (k - 1) d
    assert changed.nonzero().flatten().tolist() == [t + i * dilation for i in range(kernel_size)]


@pytest.mark.parametrize("output", ["mulaw", "continuous"])
def test_perturbing_the_input_at_t_changes_no_output_before_t(output):
    model = tiny(output, num_conditions=2, in_channels=1 if output == "mulaw" else 3)
    x = random_input(model, 64)
    condition = torch.tensor([0, 1])
    with torch.no_grad():
        out = model(x, condition)
        for t in (0, 20, 63):
            out2 = model(perturbed(x, t), condition)
            assert torch.equal(out[..., :t], out2[..., :t])
            assert not torch.equal(out[..., t], out2[..., t])  # output t sees sample t (and predicts t + 1)


@pytest.mark.parametrize("kernel_size, layers, stacks", [(2, 4, 1), (2, 3, 3), (3, 3, 2), (4, 2, 1)])
def test_receptive_field_formula_matches_an_empirical_probe(kernel_size, layers, stacks):
    model = tiny("continuous", kernel_size=kernel_size, layers_per_stack=layers, stacks=stacks)
    length = model.receptive_field + 20
    x = torch.randn(1, 1, length, requires_grad=True)
    model(x)[0, :, -1].sum().backward()
    seen = (x.grad[0, 0] != 0).nonzero().flatten()
    # the last output depends on exactly the last receptive_field inputs, all of them
    assert seen.tolist() == list(range(length - model.receptive_field, length))
    assert model.receptive_field == (kernel_size - 1) * stacks * (2 ** layers - 1) + 1


def test_receptive_field_of_the_registered_layouts():
    assert VARIANTS["wavenet"].dilations[:10] == (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    assert VARIANTS["wavenet"].receptive_field == 3070  # the paper's three stacks of 1..512
    assert VARIANTS["wavenet_small"].receptive_field == 511
    assert WaveNetConfig(stacks=1).receptive_field == 1024 and WaveNetConfig(stacks=4).receptive_field == 4093


@pytest.mark.parametrize("output", ["mulaw", "continuous"])
def test_macs_per_sample_formula_matches_counting_every_convolution(output):
    model = tiny(output, kernel_size=3, in_channels=1 if output == "mulaw" else 2)
    length, macs = 50, []
    hook = lambda m, inputs, out: macs.append(m.weight.numel() * out.shape[-1])  # 1-D conv, no groups
    for module in model.modules():
        if isinstance(module, torch.nn.Conv1d):
            module.register_forward_hook(hook)
    with torch.no_grad():
        model(model.example_input(length))
    assert sum(macs) == model.config.macs_per_sample * length
    assert VARIANTS["wavenet"].receptive_field_seconds == pytest.approx(3070 / 16000)


def test_mulaw_model_takes_classes_or_one_hot():
    model = tiny("mulaw")
    x = random_input(model, 30)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 256, 30)
        torch.testing.assert_close(model(x[:, None]), out)
        torch.testing.assert_close(model(F.one_hot(x, 256).float().transpose(1, 2)), out)


def test_a_conditioned_block_starts_as_the_unconditioned_one_and_learns_each_id():
    block = WaveNetBlock(6, 5, 7, 2, 4, num_conditions=3)
    x = torch.randn(3, 6, 40)
    outputs = block(x, torch.tensor([0, 1, 2]))
    assert torch.equal(outputs[0], block(x, torch.tensor([2, 2, 2]))[0])
    plain = WaveNetBlock(6, 5, 7, 2, 4)
    plain.load_state_dict({k: v for k, v in block.state_dict().items() if not k.startswith("condition")})
    assert torch.equal(outputs[0], plain(x)[0])  # zero offsets: the id changes nothing yet
    outputs[0].sum().backward()
    assert block.condition.weight.grad.abs().sum(1).gt(0).all()  # every id's offset learns


# --- the incremental path ---
@pytest.mark.parametrize("kernel_size, dilation, conditioned", [(2, 1, False), (2, 8, True), (3, 4, True)])
def test_block_steps_equal_its_forward(kernel_size, dilation, conditioned):
    torch.manual_seed(0)
    block = WaveNetBlock(6, 5, 7, kernel_size, dilation, num_conditions=3 if conditioned else 0)
    if conditioned:
        nn.init.normal_(block.condition.weight)  # as after training (they start at zero)
    x = torch.randn(2, 6, 50)
    condition = torch.tensor([2, 0]) if conditioned else None
    with torch.no_grad():
        out, skip = block(x, condition)
        queue, weights = block.new_queue(2), block.step_weights(condition)
        for t in range(50):
            out_t, z = block.step(x[..., t], queue, weights)
            torch.testing.assert_close(out_t, out[..., t], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(torch.addmm(weights.skip_bias, z, weights.skip_weight), skip[..., t],
                                       rtol=1e-5, atol=1e-5)
    assert len(queue.entries) == (kernel_size - 1) * dilation  # memory: the layer's history, not the signal's


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
@pytest.mark.parametrize("seeded", [False, True])
def test_fast_generation_gives_the_same_mulaw_samples_as_the_naive_reference(temperature, seeded):
    model = tiny("mulaw", num_conditions=3)
    seed_signal = random_input(model, 40) if seeded else None
    condition = torch.tensor([1, 2]) if seeded else 1
    fast = model.generate(60, temperature=temperature, seed_signal=seed_signal, condition=condition,
                          generator=torch.Generator().manual_seed(5))
    naive = model.generate_naive(60, temperature=temperature, seed_signal=seed_signal, condition=condition,
                                 generator=torch.Generator().manual_seed(5))
    assert fast.dtype == torch.long and fast.shape == (2 if seeded else 1, 60)
    assert torch.equal(fast, naive)
    if temperature > 0:  # sampling, not argmax: the draws differ with the generator's seed
        other = model.generate(60, temperature=temperature, seed_signal=seed_signal, condition=condition,
                               generator=torch.Generator().manual_seed(6))
        assert not torch.equal(fast, other)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_fast_generation_gives_the_same_continuous_samples_as_the_naive_reference(dtype, tolerance, temperature):
    # The two paths sum the same products in a different order (a matrix product per step against a
    # convolution), so the values agree to rounding: 1e-12 in float64, 1e-5 in float32.
    model = tiny("continuous", in_channels=2).to(dtype)
    seed_signal = random_input(model, 30).to(dtype)
    kwargs = dict(temperature=temperature, seed_signal=seed_signal)
    fast = model.generate(80, generator=torch.Generator().manual_seed(3), **kwargs)
    naive = model.generate_naive(80, generator=torch.Generator().manual_seed(3), **kwargs)
    assert fast.shape == (2, 2, 80) and fast.dtype == dtype
    torch.testing.assert_close(fast, naive, rtol=tolerance, atol=tolerance)
    forecast = model.forecast(seed_signal, 80, temperature=temperature, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(forecast, fast, rtol=0, atol=0)  # forecast is generate after a history
    assert model.forecast(seed_signal[0], 5, temperature=0.0).shape == (2, 5)  # one series [C, T] -> [C, horizon]


@pytest.mark.parametrize("output", ["mulaw", "continuous"])
def test_seed_longer_than_the_receptive_field_primes_the_queues_exactly(output):
    model = tiny(output).double()
    seed_signal = random_input(model, 3 * model.receptive_field, batch=1)
    seed_signal = seed_signal.double() if output == "continuous" else seed_signal
    fast = model.generate(30, seed_signal=seed_signal, generator=torch.Generator().manual_seed(0))
    naive = model.generate_naive(30, seed_signal=seed_signal, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fast, naive, rtol=1e-12, atol=1e-12)


def test_sampling_is_explicit():
    model = tiny("mulaw")
    assert torch.equal(model.generate(20, temperature=0.0), model.generate(20, temperature=0.0))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(5, temperature=-1.0)
    with pytest.raises(ValueError, match="condition"):
        tiny("mulaw", num_conditions=2).generate(5)
    with pytest.raises(ValueError, match="continuous"):
        model.forecast(torch.zeros(1, 10), 5)
    assert model.generate(0).shape == (1, 0)


# --- configuration, loss, registry ---
def test_config_is_checked():
    with pytest.raises(ModelError, match="output"):
        WaveNet(output="wav")
    with pytest.raises(ModelError, match="in_channels"):
        WaveNet(output="mulaw", in_channels=2)
    with pytest.raises(ModelError, match="kernel_size"):
        WaveNet(kernel_size=1)
    model = WaveNet.from_config(VARIANTS["wavenet_small"])
    assert model.config == VARIANTS["wavenet_small"] and len(model.blocks) == 16


def test_continuous_loss_is_the_gaussian_negative_log_likelihood():
    model = tiny("continuous", in_channels=2)
    output, target = torch.randn(3, 4, 10), torch.randn(3, 2, 10)
    mean, log_scale = output.chunk(2, dim=1)
    expected = F.gaussian_nll_loss(mean, target, torch.exp(2 * log_scale), full=True)
    torch.testing.assert_close(model.loss(output, target), expected)


def test_registered_as_sequence_models():
    for name in ("wavenet", "wavenet_small"):
        info = get_model_info(name)
        assert info.task == "sequence" and info.family == "wavenet" and info.input_size[0] == 1
        model = info.builder()
        assert isinstance(model, WaveNet) and model.config == VARIANTS[name]
    small = get_model_info("wavenet_small").builder(output="continuous", in_channels=3)
    assert small(small.example_input(64)).shape == (1, 6, 64)


# --- learning ---
def period_of(signal: np.ndarray, shortest: int, longest: int) -> int:
    """The lag in [shortest, longest) with the highest autocorrelation."""
    signal = signal - signal.mean()
    scores = [float((signal[:-lag] * signal[lag:]).mean()) for lag in range(shortest, longest)]
    return shortest + int(np.argmax(scores))


def periodic(length: int, period: int) -> np.ndarray:
    t = np.arange(length)
    return (0.8 * np.sin(2 * np.pi * t / period) + 0.3 * np.sin(4 * np.pi * t / period + 1)).astype(np.float32)


def train(model, loader, epochs: int, lr: float = 1e-2) -> list[float]:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            loss = model.loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def test_training_on_a_periodic_signal_learns_to_generate_its_period():
    period = 16
    signal = periodic(4000, period)
    torch.manual_seed(0)
    model = WaveNet(residual_channels=16, gate_channels=16, skip_channels=32, layers_per_stack=5, stacks=1)
    loader = WindowLoader(SignalSet([signal[None]], ["sine"]), window=96, batch_size=8, target="mulaw")
    losses = train(model, loader, epochs=8)
    assert np.mean(losses[-5:]) < 0.2 * losses[0]  # from ln(256) = 5.5 nats to well below 1
    model.eval()
    seed_signal = mu_law_encode(signal[:2 * period])[None]
    generated = model.generate(320, seed_signal=seed_signal, generator=torch.Generator().manual_seed(0))
    audio = mu_law_decode(generated[0]).numpy()
    assert period_of(audio, period // 2, 2 * period) == period
    assert audio.std() > 0.3  # an oscillation, not a constant


def test_training_on_a_periodic_series_forecasts_its_period():
    period = 24
    clean = periodic(4000, period)
    noisy = clean + 0.05 * np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    torch.manual_seed(0)
    model = WaveNet(residual_channels=16, gate_channels=16, skip_channels=32, layers_per_stack=5, stacks=1,
                    output="continuous")
    history = noisy[None, :3600]
    loader = WindowLoader(SignalSet([history], ["sine"]), window=96, batch_size=8, target="continuous")
    losses = train(model, loader, epochs=40, lr=5e-3)
    assert np.mean(losses[-5:]) < losses[0] - 1.5  # nats: the Gaussian narrows towards the noise's 0.05
    model.eval()
    forecast = model.forecast(torch.from_numpy(history), 400)[0].numpy()
    assert period_of(forecast, period // 2, 2 * period) == period
    assert np.abs(forecast - clean[3600:]).mean() < 0.5 * np.abs(clean[3600:]).mean()
    assert math.isfinite(float(forecast.sum()))
