"""WaveNet (van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio", arXiv:1609.03499):
stacks of gated residual layers whose causal convolutions double their dilation at every layer, so
the receptive field grows exponentially with depth while the parameters grow linearly.

Two outputs, chosen by the data:

- ``"mulaw"`` (audio): the input is μ-law classes ``[N, T]`` (int64 in ``[0, 256)``), the output
  256 logits per step ``[N, 256, T]``; loss: cross-entropy (the paper's section 2.2).
- ``"continuous"`` (a time series, ``in_channels`` values per step): the input is floats
  ``[N, C, T]`` (standardised), the output a Gaussian per value and step ``[N, 2C, T]``: the C means,
  then the C log standard deviations; loss: Gaussian negative log-likelihood (:meth:`WaveNet.loss`),
  which gives sampling a scale where MSE would give only a mean.

Output ``t`` predicts sample ``t + 1`` (teacher forcing: targets are the input shifted by one).
:meth:`WaveNet.generate` samples with the incremental path of Paine et al. 2016 (one step per layer
per sample); :meth:`WaveNet.generate_naive` recomputes the receptive field for every sample and is
the reference the fast path is tested against.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial
from typing import Optional, Union, cast

import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.layers.causal import StepQueue, StepWeights, WaveNetBlock, stack_skip_weights, sum_skips
from cnnzoo.registry import ModelError, register_model

OUTPUTS = ("mulaw", "continuous")
# The log standard deviation of the continuous output is kept above this, so a near-perfect fit of a
# noiseless series cannot drive the likelihood to infinity (as r9y9/wavenet_vocoder's -7).
LOG_SCALE_MIN = -7.0


@dataclass(frozen=True)
class WaveNetConfig:
    """One WaveNet, as data. The defaults are the paper's layout: the paper gives dilations 1..512
    repeated ("e.g. 1, 2, ..., 512, 1, 2, ..., 512, 1, 2, ..., 512") and kernel 2 but no widths; the
    widths are those of ibab/tensorflow-wavenet, the reference reimplementation."""

    residual_channels: int = 32  # width of the residual stream between layers
    gate_channels: int = 32      # width of each of the filter and the gate ("dilation channels")
    skip_channels: int = 512     # width of the skip connections summed into the output head
    layers_per_stack: int = 10   # dilations 1, 2, 4, ..., 2**(layers_per_stack - 1)
    stacks: int = 3              # how many times the dilation stack repeats
    kernel_size: int = 2
    output: str = "mulaw"        # "mulaw" (256-way categorical) or "continuous" (a Gaussian per value)
    in_channels: int = 1         # values per step of a continuous signal; 1 for mulaw
    num_conditions: int = 0      # global condition ids (speakers, classes); 0: unconditioned
    quantization: int = 256      # mulaw classes: mu + 1 with the paper's mu = 255
    sample_rate: int = 16000     # Hz, for audio: what the data is resampled to and seconds refer to

    def __post_init__(self):
        if self.output not in OUTPUTS:
            raise ModelError(f"WaveNet output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if self.output == "mulaw" and self.in_channels != 1:
            raise ModelError(f"a mulaw WaveNet reads one class per step: in_channels must be 1, got {self.in_channels}")
        for name in ("residual_channels", "gate_channels", "skip_channels", "layers_per_stack", "stacks",
                     "in_channels", "sample_rate"):
            if getattr(self, name) < 1:
                raise ModelError(f"WaveNet {name} must be at least 1, got {getattr(self, name)}")
        if self.kernel_size < 2:
            raise ModelError(f"WaveNet kernel_size must be at least 2 (1 sees no past), got {self.kernel_size}")

    @property
    def dilations(self) -> tuple[int, ...]:
        return tuple(2 ** i for i in range(self.layers_per_stack)) * self.stacks

    @property
    def receptive_field(self) -> int:
        """Samples one output sees: ``(k - 1) * stacks * (2**layers_per_stack - 1) + 1``.

        Each layer looks ``(k - 1) * dilation`` further back and the dilations of a stack sum to
        ``2**layers - 1``; the input embedding and the head are 1x1 and add nothing.
        """
        return (self.kernel_size - 1) * self.stacks * (2 ** self.layers_per_stack - 1) + 1

    @property
    def receptive_field_seconds(self) -> float:
        return self.receptive_field / self.sample_rate

    @property
    def macs_per_sample(self) -> int:
        """Multiply-adds of ``forward`` per output step: every layer's dilated convolution (k taps, to
        filter and gate), residual and skip 1x1s, the input 1x1 (a lookup for mulaw: none) and the head."""
        per_layer = (self.kernel_size * self.residual_channels * 2 * self.gate_channels
                     + self.gate_channels * (self.residual_channels + self.skip_channels))
        embed = 0 if self.output == "mulaw" else self.in_channels * self.residual_channels
        head = self.skip_channels * (self.skip_channels + self.out_channels)
        return len(self.dilations) * per_layer + embed + head

    @property
    def out_channels(self) -> int:
        return self.quantization if self.output == "mulaw" else 2 * self.in_channels


PAPER = WaveNetConfig()


class WaveNet(nn.Module):
    """WaveNet built from a :class:`WaveNetConfig` (the arguments are its fields; see its comments).

    As in the paper's figure 4, every block has a residual 1x1 convolution, so the last block's feeds
    nothing: ``has_unused_parameters`` tells DistributedDataParallel not to wait for its gradient.

    ``forward(x, condition=None)``: ``x`` is ``[N, T]`` int64 μ-law classes (``[N, 1, T]`` and one-hot
    floats ``[N, 256, T]`` are accepted too) or ``[N, C, T]`` floats; ``condition`` a LongTensor
    ``[N]`` of ids when ``num_conditions > 0``. Returns ``[N, out_channels, T]``, output ``t`` being
    the prediction of sample ``t + 1``.
    """

    has_unused_parameters = True  # the last block's residual convolution (see above)

    def __init__(self, residual_channels: int = PAPER.residual_channels, gate_channels: int = PAPER.gate_channels,
                 skip_channels: int = PAPER.skip_channels, layers_per_stack: int = PAPER.layers_per_stack,
                 stacks: int = PAPER.stacks, kernel_size: int = PAPER.kernel_size, output: str = PAPER.output,
                 in_channels: int = PAPER.in_channels, num_conditions: int = PAPER.num_conditions,
                 quantization: int = PAPER.quantization, sample_rate: int = PAPER.sample_rate):
        super().__init__()
        cfg = WaveNetConfig(residual_channels, gate_channels, skip_channels, layers_per_stack, stacks, kernel_size,
                            output, in_channels, num_conditions, quantization, sample_rate)
        self.config = cfg
        # One-hot classes through a 1x1 convolution is a lookup: an embedding, without the one-hot tensor.
        self.embed = (nn.Embedding(cfg.quantization, cfg.residual_channels) if cfg.output == "mulaw"
                      else nn.Conv1d(cfg.in_channels, cfg.residual_channels, 1))
        self.blocks = nn.ModuleList(
            WaveNetBlock(cfg.residual_channels, cfg.gate_channels, cfg.skip_channels, cfg.kernel_size, d,
                         cfg.num_conditions)
            for d in cfg.dilations)
        # Figure 4: ReLU -> 1x1 -> ReLU -> 1x1 over the sum of the skip connections.
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(cfg.skip_channels, cfg.skip_channels, 1), nn.ReLU(),
                                  nn.Conv1d(cfg.skip_channels, cfg.out_channels, 1))

    @classmethod
    def from_config(cls, config: WaveNetConfig) -> WaveNet:
        return cls(**asdict(config))

    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    @property
    def _output_weight(self) -> torch.Tensor:
        """The last layer's weight: its device and dtype are the model's."""
        return cast(nn.Conv1d, self.head[-1]).weight

    # --- training ---
    def forward(self, x: torch.Tensor, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self._embed(x)
        skips = 0
        for block in self.blocks:
            h, skip = block(h, condition)
            skips = skips + skip
        return self.head(skips)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.output == "continuous":
            if x.dim() != 3 or x.shape[1] != self.config.in_channels:
                raise ValueError(f"expected floats [N, {self.config.in_channels}, T], got {tuple(x.shape)}")
            return self.embed(x)
        if x.is_floating_point():  # one-hot (or any distribution over the classes) [N, Q, T]
            return torch.einsum("nqt,qr->nrt", x, self.embed.weight)
        if x.dim() == 3 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() != 2:
            raise ValueError(f"expected mulaw classes [N, T], got {tuple(x.shape)}")
        return self.embed(x).transpose(1, 2)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss of ``forward``'s output against the next samples: cross-entropy over the classes
        (mulaw; ``target`` int64 ``[N, T]``) or Gaussian negative log-likelihood in nats per value
        (continuous; ``target`` ``[N, C, T]``)."""
        if self.config.output == "mulaw":
            return F.cross_entropy(output, target)
        mean, log_scale = self.split_continuous(output)
        return (log_scale + 0.5 * ((target - mean) * torch.exp(-log_scale)) ** 2).mean() + 0.5 * math.log(2 * math.pi)

    def split_continuous(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A continuous output ``[N, 2C, ...]`` -> ``(mean, log standard deviation)``, each ``[N, C, ...]``."""
        mean, log_scale = output.chunk(2, dim=1)
        return mean, log_scale.clamp(min=LOG_SCALE_MIN)

    def example_input(self, length: int, batch: int = 1) -> torch.Tensor:
        """A valid input of ``length`` steps (silence), for profiling and shape checks."""
        if self.config.output == "mulaw":
            return torch.full((batch, length), self.config.quantization // 2, dtype=torch.long)
        return torch.zeros(batch, self.config.in_channels, length)

    # --- generation ---
    @torch.inference_mode()
    def generate(self, n_samples: int, *, temperature: float = 1.0, seed_signal: Optional[torch.Tensor] = None,
                 condition: Union[int, torch.Tensor, None] = None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n_samples`` new samples after ``seed_signal`` (an input as ``forward`` takes; default: one step
        of silence), with the incremental path: each layer keeps a queue of its past inputs, so a sample
        costs one step per layer whatever the receptive field.

        Sampling is explicit: ``temperature`` scales the logits (mulaw) or the standard deviation
        (continuous); ``temperature=0`` takes the argmax or the mean (deterministic, and for an
        unconditioned audio model often a constant). Returns int64 classes ``[N, n_samples]`` (mulaw)
        or floats ``[N, C, n_samples]``.
        """
        current, seed, condition = self._start(seed_signal, condition)
        batch, dtype, device = len(current), self._output_weight.dtype, self._output_weight.device
        blocks = cast("list[WaveNetBlock]", self.blocks)
        queues = [block.new_queue(batch, dtype=dtype, device=device) for block in blocks]
        weights = [block.step_weights(condition) for block in blocks]
        conv1, conv2 = cast(nn.Conv1d, self.head[1]), cast(nn.Conv1d, self.head[3])
        head = (*stack_skip_weights(weights), conv1.weight[:, :, 0].t(), cast(torch.Tensor, conv1.bias),
                conv2.weight[:, :, 0].t(), cast(torch.Tensor, conv2.bias))
        if seed is not None and seed.shape[-1] > 1:
            # The queues need each layer's last inputs, which depend on the last receptive_field - 1
            # samples before the current one only: a longer seed costs no more.
            self._fill_queues(queues, seed[..., :-1][..., -(self.receptive_field - 1):], condition)
        # Written in place: the only memory that grows with n_samples is the result itself.
        samples = self._empty(batch, n_samples)
        for i in range(n_samples):
            current = self._sample(self._step(current, queues, weights, head), temperature, generator)
            samples[..., i] = current
        return samples

    @torch.inference_mode()
    def generate_naive(self, n_samples: int, *, temperature: float = 1.0, seed_signal: Optional[torch.Tensor] = None,
                       condition: Union[int, torch.Tensor, None] = None,
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """:meth:`generate` by running ``forward`` over the last receptive field for every new sample:
        ``receptive_field`` times the work, and the reference the fast path must reproduce."""
        current, seed, condition = self._start(seed_signal, condition)
        signal = seed if seed is not None else current.unsqueeze(-1)
        start = signal.shape[-1]
        for _ in range(n_samples):
            out = self.forward(signal[..., -self.receptive_field:], condition)[..., -1]
            current = self._sample(out, temperature, generator)
            signal = torch.cat([signal, current.unsqueeze(-1)], dim=-1)
        return signal[..., start:]

    @torch.inference_mode()
    def forecast(self, history: torch.Tensor, horizon: int, *, temperature: float = 0.0,
                 condition: Union[int, torch.Tensor, None] = None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Roll a continuous model forward ``horizon`` steps after ``history`` ``[N, C, T]`` (or ``[C, T]``,
        in the units the model was trained on), feeding each prediction back in. ``temperature=0``
        (default) follows the predicted means: a point forecast; above 0 it draws a sample path."""
        if self.config.output != "continuous":
            raise ValueError("forecast needs a continuous WaveNet; a mulaw model generates audio with generate()")
        squeeze = history.dim() == 2
        history = history.unsqueeze(0) if squeeze else history
        out = self.generate(horizon, temperature=temperature, seed_signal=history, condition=condition,
                            generator=generator)
        return out[0] if squeeze else out

    def _start(self, seed_signal: Optional[torch.Tensor], ids: Union[int, torch.Tensor, None]
               ) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """(the last input step ``[N]`` or ``[N, C]``, the seed as ``forward`` takes it, condition ``[N]``)."""
        seed = None if seed_signal is None else self._check_seed(seed_signal)
        weight = self._output_weight
        condition = None
        if ids is not None:
            condition = torch.as_tensor(ids, dtype=torch.long, device=weight.device).reshape(-1)
        batch = len(seed) if seed is not None else (len(condition) if condition is not None else 1)
        if condition is not None and len(condition) == 1:
            condition = condition.expand(batch)
        if condition is not None and len(condition) != batch:
            raise ValueError(f"{len(condition)} conditions for a batch of {batch}")
        if self.config.num_conditions and condition is None:
            raise ValueError(f"this WaveNet is conditioned on {self.config.num_conditions} ids: pass condition=")
        if seed is not None:
            return seed[..., -1], seed, condition
        silence = self.example_input(1, batch).to(weight.device)
        if self.config.output == "continuous":
            silence = silence.to(weight.dtype)
        return silence[..., 0], None, condition

    def _check_seed(self, seed: torch.Tensor) -> torch.Tensor:
        cfg, weight = self.config, self._output_weight
        if cfg.output == "mulaw":
            seed = seed[:, 0] if seed.dim() == 3 and seed.shape[1] == 1 else seed
            if seed.dim() != 2 or seed.is_floating_point():
                raise ValueError(f"seed_signal for a mulaw model: int64 classes [N, T], got {seed.dtype} "
                                 f"{tuple(seed.shape)}")
            seed = seed.to(weight.device)
        else:
            if seed.dim() != 3 or seed.shape[1] != cfg.in_channels:
                raise ValueError(f"seed_signal: floats [N, {cfg.in_channels}, T], got {tuple(seed.shape)}")
            seed = seed.to(weight.device, weight.dtype)
        if seed.shape[-1] == 0:
            raise ValueError("seed_signal is empty")
        return seed

    def _fill_queues(self, queues: list[Optional[StepQueue]], history: torch.Tensor, condition) -> None:
        """Prime every layer's queue with its inputs over ``history`` (one ``forward`` pass, not one step each)."""
        h = self._embed(history)
        for block, queue in zip(self.blocks, queues):
            if queue is not None:
                queue.fill(h)
            h, _ = block(h, condition)

    def _step(self, x: torch.Tensor, queues: list[Optional[StepQueue]], weights: list[StepWeights],
              head: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """One step of the whole network: last input ``[N]`` or ``[N, C]`` -> output ``[N, out_channels]``."""
        if self.config.output == "mulaw":
            h = self.embed.weight[x]
        else:
            embed = cast(nn.Conv1d, self.embed)
            h = F.linear(x, embed.weight[:, :, 0], embed.bias)
        gated_outputs = []
        for block, queue, block_weights in zip(cast("list[WaveNetBlock]", self.blocks), queues, weights):
            h, z = block.step(h, queue, block_weights)
            gated_outputs.append(z)
        skip_weight, skip_bias, weight1, bias1, weight2, bias2 = head
        skips = sum_skips(gated_outputs, skip_weight, skip_bias)
        return torch.addmm(bias2, torch.addmm(bias1, skips.relu_(), weight1).relu_(), weight2)

    def _sample(self, out: torch.Tensor, temperature: float, generator: Optional[torch.Generator]) -> torch.Tensor:
        """The next input from one step's output ``[N, out_channels]``; both generation paths draw the
        same random numbers in the same order, so under the same generator they give the same samples."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if self.config.output == "mulaw":
            if temperature == 0:
                return out.argmax(-1)
            # Gumbel-max: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T).
            uniform = torch.rand(out.shape, generator=generator, device=out.device, dtype=out.dtype)
            return (out + temperature * -torch.log(-torch.log(uniform))).argmax(-1)
        mean, log_scale = self.split_continuous(out)
        if temperature == 0:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=out.device, dtype=out.dtype)
        return mean + temperature * torch.exp(log_scale) * noise

    def _empty(self, batch: int, length: int) -> torch.Tensor:
        weight = self._output_weight
        if self.config.output == "mulaw":
            return torch.empty(batch, length, dtype=torch.long, device=weight.device)
        return torch.empty(batch, self.config.in_channels, length, dtype=weight.dtype, device=weight.device)


# The paper's layout (three stacks of dilations 1..512, receptive field 3,070 samples, 0.19 s at
# 16 kHz) and a small one to train on a CPU (a fifth of its multiply-adds per sample): two stacks of
# 1..128 (511 samples, 64 ms at 8 kHz, the telephone rate μ-law companding was made for).
VARIANTS = {
    "wavenet": PAPER,
    "wavenet_small": WaveNetConfig(residual_channels=32, gate_channels=32, skip_channels=128, layers_per_stack=8,
                                   stacks=2, sample_rate=8000),
}
INPUT_SAMPLES = {"wavenet": 4096, "wavenet_small": 2048}  # about a receptive field or more: one training window

for _name, _config in VARIANTS.items():
    register_model(_name, partial(WaveNet, **asdict(_config)), family="wavenet",
                   paper="van den Oord et al. 2016, WaveNet: A Generative Model for Raw Audio, arXiv:1609.03499",
                   input_size=(1, INPUT_SAMPLES[_name]), task="sequence")
