"""WaveNet's blocks (van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio",
arXiv:1609.03499): the causal dilated 1-D convolution and the gated residual block built on it.

Both run two ways. ``forward`` takes a whole signal ``[N, C, T]`` (training, and the reference).
``step`` takes one new time step ``[N, C]`` and a :class:`StepQueue` of the layer's past inputs and
returns that step's output: the incremental generation of Paine et al. 2016 ("Fast Wavenet
Generation Algorithm", arXiv:1611.09482). A layer of dilation ``d`` and kernel ``k`` only ever
needs its inputs ``d, 2d, ..., (k-1)d`` steps back, so one new sample costs one small matrix
product per layer instead of a pass over the whole receptive field.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn


class StepQueue:
    """The last ``length`` inputs ``[N, C]`` of one causal convolution (Paine et al.'s queue).

    A ring of references: a push replaces the oldest entry, so a step costs the same whatever the
    dilation, and no tensor is copied. Pushed tensors must not be modified afterwards (the step
    functions below always make new ones). It starts full of zeros, which is exactly the left
    padding ``forward`` adds, so stepping from a new queue reproduces ``forward`` over a signal that
    starts at the first step.
    """

    def __init__(self, length: int, batch: int, channels: int, *, dtype=torch.float32, device="cpu"):
        self.length = length
        self.entries = [torch.zeros(batch, channels, dtype=dtype, device=device)] * length
        self.position = 0  # the slot of the oldest entry, which the next push replaces

    def delayed(self, steps: int) -> torch.Tensor:
        """The input pushed ``steps`` pushes ago (``1 <= steps <= length``), ``[N, C]``."""
        return self.entries[(self.position - steps) % self.length]

    def push(self, x: torch.Tensor) -> None:
        self.entries[self.position] = x
        self.position = (self.position + 1) % self.length

    def fill(self, history: torch.Tensor) -> None:
        """Load the most recent inputs of ``history`` ``[N, C, T]`` (a signal's past, as ``forward`` saw
        it); a history shorter than the queue leaves the zeros of the padding before it."""
        recent = history[..., -self.length:].permute(2, 0, 1).contiguous().unbind(0)  # T' x [N, C]
        zeros = self.entries[0].new_zeros(self.entries[0].shape)
        self.entries = [zeros] * (self.length - len(recent)) + list(recent)
        self.position = 0


class CausalConv1d(nn.Conv1d):
    """A 1-D convolution whose output at step ``t`` sees only inputs ``t - (k-1)d, ..., t - d, t``.

    ``forward`` pads ``(kernel_size - 1) * dilation`` zeros on the left only (the paper's figure 2:
    no output depends on a future input) and keeps the length. Same parameters and state dict as
    ``nn.Conv1d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, dilation: int = 1,
                 bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)

    @property
    def history(self) -> int:
        """How many past inputs one output needs: ``(kernel_size - 1) * dilation``."""
        return (self.kernel_size[0] - 1) * self.dilation[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.history, 0)))

    def new_queue(self, batch: int, *, dtype=torch.float32, device="cpu") -> Optional[StepQueue]:
        """An empty queue for :meth:`step` (None for a 1-tap kernel, which needs no past)."""
        return StepQueue(self.history, batch, self.in_channels, dtype=dtype, device=device) if self.history else None

    def step_weight(self) -> torch.Tensor:
        """The kernel as one matrix ``[k * C_in, C_out]`` for ``taps @ W``, taps oldest first (see :meth:`step`)."""
        return self.weight.permute(2, 1, 0).reshape(-1, self.out_channels)

    def step(self, x: torch.Tensor, queue: Optional[StepQueue], weight: Optional[torch.Tensor] = None,
             bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The output for one new input ``x`` ``[N, C_in]`` -> ``[N, C_out]``; pushes ``x`` onto ``queue``.

        ``weight`` (from :meth:`step_weight`) and ``bias`` (``[C_out]``, or ``[N, C_out]`` with a
        condition folded in) can be made once per generation instead of once per step; by default
        they are the layer's own.
        """
        weight = self.step_weight() if weight is None else weight
        bias = self.bias if bias is None else bias
        if queue is None:  # a 1-tap kernel
            return x @ weight if bias is None else torch.addmm(bias, x, weight)
        k, d = self.kernel_size[0], self.dilation[0]
        # Tap i of the kernel sees the input (k - 1 - i) * d steps back: the oldest first, x last.
        taps = torch.cat([queue.delayed((k - 1 - i) * d) for i in range(k - 1)] + [x], 1)
        queue.push(x)
        return taps @ weight if bias is None else torch.addmm(bias, taps, weight)


def _bias(conv: nn.Conv1d) -> torch.Tensor:
    """A convolution's bias; the WaveNet block's convolutions always have one (made with bias=True)."""
    if conv.bias is None:
        raise ValueError(f"{conv} has no bias; WaveNet's step path needs one")
    return conv.bias


class StepWeights(NamedTuple):
    """A :class:`WaveNetBlock`'s parameters arranged for :meth:`WaveNetBlock.step`: matrices to
    right-multiply (not kernels), the condition folded into the bias. Made once per generation."""

    conv_weight: torch.Tensor      # [k * residual, 2 * gate]
    conv_bias: torch.Tensor        # [2 * gate] or [N, 2 * gate]
    residual_weight: torch.Tensor  # [gate, residual]
    residual_bias: torch.Tensor
    skip_weight: torch.Tensor      # [gate, skip]
    skip_bias: torch.Tensor


class WaveNetBlock(nn.Module):
    """One residual layer of WaveNet (section 2.3-2.5, figure 4).

    ``z = tanh(W_f * x + V_f h) * sigmoid(W_g * x + V_g h)`` with ``*`` a causal dilated convolution
    (filter and gate computed by one convolution of ``2 * gate_channels`` outputs) and ``h`` an
    optional global condition (a class or speaker id, embedded per layer: the paper's ``V^T h``).
    A 1x1 ``residual`` convolution of ``z`` is added to ``x``; a 1x1 ``skip`` convolution of ``z``
    goes to the output head. Returns ``(x + residual(z), skip(z))``.
    """

    def __init__(self, residual_channels: int, gate_channels: int, skip_channels: int, kernel_size: int = 2,
                 dilation: int = 1, num_conditions: int = 0):
        super().__init__()
        self.conv = CausalConv1d(residual_channels, 2 * gate_channels, kernel_size, dilation)
        # An id's row is the paper's V_f^T h and V_g^T h at once: a learned bias of the filter and the gate.
        # Zero at the start, so a conditioned WaveNet starts as the unconditioned one and learns each id's
        # offset: nn.Embedding's N(0, 1) rows put random unit offsets on every gate, which the network then
        # has to unlearn.
        self.condition = nn.Embedding(num_conditions, 2 * gate_channels) if num_conditions else None
        if self.condition is not None:
            nn.init.zeros_(self.condition.weight)
        self.residual = nn.Conv1d(gate_channels, residual_channels, 1)
        self.skip = nn.Conv1d(gate_channels, skip_channels, 1)
        self.dilation = dilation

    def forward(self, x: torch.Tensor, condition: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x)
        if self.condition is not None:
            h = h + self._condition_embedding(condition).unsqueeze(-1)
        z = gated(h)
        return x + self.residual(z), self.skip(z)

    def _condition_embedding(self, condition: Optional[torch.Tensor]) -> torch.Tensor:
        if self.condition is None:
            raise ValueError("this block is not conditioned (num_conditions=0): pass no condition")
        if condition is None:
            raise ValueError("this block is conditioned: pass condition, a LongTensor [N] of ids")
        return self.condition(condition)

    def new_queue(self, batch: int, *, dtype=torch.float32, device="cpu") -> Optional[StepQueue]:
        return self.conv.new_queue(batch, dtype=dtype, device=device)

    def step_weights(self, condition: Optional[torch.Tensor] = None) -> StepWeights:
        """This block's parameters for :meth:`step`; ``condition`` LongTensor ``[N]`` when conditioned."""
        bias = _bias(self.conv)
        if self.condition is not None:
            bias = bias + self._condition_embedding(condition)
        return StepWeights(self.conv.step_weight(), bias, self.residual.weight[:, :, 0].t(), _bias(self.residual),
                           self.skip.weight[:, :, 0].t(), _bias(self.skip))

    def step(self, x: torch.Tensor, queue: Optional[StepQueue], weights: StepWeights
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One new time step ``x`` ``[N, residual]`` -> ``(x + residual(z), z)``, the first equal to
        ``forward``'s at that step; ``weights`` from :meth:`step_weights`.

        It returns the gated activations ``z`` rather than ``skip(z)``: a network then sums the skips
        of all its layers in one product (:func:`sum_skips`) instead of a small product and an
        addition per layer, when one step of a layer is only about ten such small operations.
        """
        z = gated(self.conv.step(x, queue, weights.conv_weight, weights.conv_bias))
        return torch.addmm(weights.residual_bias, z, weights.residual_weight).add_(x), z


def stack_skip_weights(weights: list[StepWeights]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every layer's skip convolution as one matrix ``[L * gate, skip]`` and one bias, for :func:`sum_skips`."""
    return torch.cat([w.skip_weight for w in weights]), torch.stack([w.skip_bias for w in weights]).sum(0)


def sum_skips(gated_outputs: list[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``sum_l skip_l(z_l)`` over the layers, as ``[z_1 ... z_L] @ [W_1; ...; W_L] + sum_l b_l``."""
    return torch.addmm(bias, torch.cat(gated_outputs, 1), weight)


def gated(h: torch.Tensor) -> torch.Tensor:
    """The gated activation unit ``tanh(filter) * sigmoid(gate)`` (eq. 2); ``h`` holds the filter's
    channels, then the gate's, along dimension 1."""
    half = h.shape[1] // 2
    filt, gate = h[:, :half], h[:, half:]
    return torch.tanh(filt) * torch.sigmoid(gate)
