"""TensorFlow's ``padding="SAME"``: what Keras' and TensorFlow's weights were trained with.

TensorFlow pads so that the output has ``ceil(size / stride)`` positions and puts the odd pixel of
padding after the input (bottom, right), where PyTorch's symmetric padding would put one on each side.
A stride-2 3x3 convolution on an even size is the case that differs: TensorFlow pads (0, 1), PyTorch's
``padding=1`` pads (1, 1) and shifts every output by one pixel, so borrowed weights see other inputs.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

IntPair = Union[int, tuple[int, int]]


def tf_same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """``(before, after)`` padding of one spatial dimension of ``size`` as TensorFlow's ``"SAME"``.

    Works on ints and on the symbolic sizes of ``torch.export`` (so an export keeps any input size).
    """
    out = (size + stride - 1) // stride  # ceil(size / stride)
    total = torch.sym_max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    # torch types sym_max as int | SymInt whatever its arguments; a SymInt is what torch.Size's "int"
    # sizes are under torch.export, so the pads are ints as far as every caller is concerned
    return total // 2, total - total // 2  # type: ignore[return-value]


def _pair(value: IntPair) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


class TFSamePad2d(nn.Module):
    """Zero padding in front of a ``padding=0`` convolution that makes it compute TensorFlow's ``"SAME"``.

    With ``input_size`` (an int or ``(height, width)``) the pads are fixed once, and the module is a
    plain ``F.pad`` with constants; without it they are computed from each input's shape, so one
    model serves every image size (and exports to ONNX with symbolic height and width).
    """

    def __init__(self, kernel_size: IntPair, stride: IntPair = 1, dilation: IntPair = 1,
                 input_size: Optional[IntPair] = None):
        super().__init__()
        self.kernel_size, self.stride, self.dilation = _pair(kernel_size), _pair(stride), _pair(dilation)
        self.input_size = None if input_size is None else _pair(input_size)
        self.static_pads = None if self.input_size is None else self._pads(self.input_size)

    def _pads(self, size: Sequence[int]) -> tuple[int, int, int, int]:
        top, bottom = tf_same_pads(size[0], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = tf_same_pads(size[1], self.kernel_size[1], self.stride[1], self.dilation[1])
        return left, right, top, bottom  # F.pad's order: last dimension first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fixed, pads = self.input_size, self.static_pads  # both None, or both set by __init__
        if fixed is None or pads is None:
            return F.pad(x, self._pads(x.shape[-2:]))
        if tuple(x.shape[-2:]) != fixed and not torch.jit.is_tracing():
            raise ValueError(f"TFSamePad2d was built for {fixed[0]}x{fixed[1]} inputs, got {x.shape[-2]}x{x.shape[-1]}")
        return F.pad(x, pads)

    def extra_repr(self) -> str:
        fixed = f", input_size={self.input_size}" if self.input_size else ""
        return f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}{fixed}"
