"""The convolution every model here uses, and the conv -> norm -> activation block built on it."""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from .factories import get_act_layer, get_norm_layer
from .padding import TFSamePad2d

# When a convolution's output has at most this many positions (a 2x2 map or smaller, as in the last
# stage of a ResNet at 64 px or 32 px), oneDNN's CPU weight-gradient kernel is far slower than the
# same sum done as one matrix product: 55 ms against 5 ms for a 512->512 3x3 conv at batch 64 and a
# 1x1 map on two cores, so the layer's forward + backward runs 1.5-5x faster and a ResNet-18 training
# step 1.3-1.8x (`benchmarks/bench_conv_grad.py` measures every case). 1x1 kernels, small weights and
# larger maps are left to oneDNN: there the matrix product was measured no faster.
SMALL_OUTPUT_POSITIONS = 4
SMALL_OUTPUT_MIN_WEIGHTS = 65536


class _SmallOutputConv2d(torch.autograd.Function):
    """``F.conv2d`` whose weight gradient is computed as unfold + matmul instead of by oneDNN.

    Forward and input gradient are PyTorch's own kernels; only the weight gradient's route differs,
    and it is the same sum over batch and output positions (equal up to float rounding order).

    Under CPU mixed precision the forward runs in bfloat16 as autocast decides, and the weight
    gradient is summed in float32, the weight's own type. That is also a fix: oneDNN's bfloat16
    weight-gradient kernel for these 1x1 outputs left some entries unset - a NaN in about one
    process in three (ResNet-18 at 16 px: stages.3.0.conv1, one kernel tap).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, dilation)
        ctx.has_bias = bias is not None
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:  # in the forward's precision (bfloat16 under autocast), as PyTorch does
            low = grad_out.dtype
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x.to(low), weight.to(low), None, stride, padding, dilation, False, [0, 0], 1,
                [True, False, False])[0].to(x.dtype)
        if ctx.needs_input_grad[1]:
            x, grad_out = x.to(weight.dtype), grad_out.to(weight.dtype)  # no copy unless under autocast
            out_channels, in_channels, kh, kw = weight.shape
            cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)
            batch, _, positions = cols.shape              # cols: [batch, in_channels * kh * kw, positions]
            grad_rows = (grad_out.reshape(batch, out_channels, positions).transpose(0, 1)
                         .reshape(out_channels, batch * positions))
            if weight.is_contiguous() or kh * kw == 1:
                grad_weight = (grad_rows @ cols.transpose(1, 2).reshape(batch * positions, -1)).view(weight.shape)
            else:
                # NHWC weights: order each patch (kh, kw, in) so the product lands in the weight's own
                # layout; otherwise autograd copies the whole gradient into it (3 ms of an 18 ms layer
                # at batch 16), where permuting the patches costs a fraction of that.
                patches = cols.view(batch, in_channels, kh * kw, positions).permute(0, 3, 2, 1)
                grad_weight = (grad_rows @ patches.reshape(batch * positions, -1)
                               ).view(out_channels, kh, kw, in_channels).permute(0, 3, 1, 2)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum((0, 2, 3)).to(ctx.bias_dtype)
        return grad_x, grad_weight, grad_bias, None, None, None


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same state dict) that, when training on the CPU, takes a faster
    route for the weight gradient of convolutions with a tiny output map (see ``SMALL_OUTPUT_POSITIONS``).
    Everywhere else (GPU, inference, TorchScript, tracing, export) it is exactly
    ``nn.Conv2d``.
    """

    def forward(self, input):
        if torch.jit.is_scripting():
            return self._conv_forward(input, self.weight, self.bias)
        if self._takes_small_output_route(input):
            return _SmallOutputConv2d.apply(input, self.weight, self.bias, self.stride, self.padding,
                                            self.dilation)
        return self._conv_forward(input, self.weight, self.bias)

    @torch.jit.unused
    def _takes_small_output_route(self, input):
        if (input.device.type != "cpu" or not self.weight.requires_grad or not torch.is_grad_enabled()
                or self.groups != 1 or self.padding_mode != "zeros" or isinstance(self.padding, str)
                or self.kernel_size == (1, 1) or self.weight.numel() < SMALL_OUTPUT_MIN_WEIGHTS
                or input.dim() != 4 or torch.jit.is_tracing() or torch.compiler.is_compiling()):
            return False
        positions = 1
        for size, k, s, p, d in zip(input.shape[2:], self.kernel_size, self.stride, self.padding, self.dilation):
            positions *= (size + 2 * p - d * (k - 1) - 1) // s + 1
        return positions <= SMALL_OUTPUT_POSITIONS


class ConvNormAct(nn.Sequential):
    """``Conv2d`` then an optional norm and an optional activation, with 'same' padding by default.

    Children are named ``conv``, ``norm`` and ``act``; a norm or activation of ``'none'`` is left out
    rather than replaced by an Identity, so the state dict holds only what computes something.
    ``bias=None`` means: a bias only when there is no norm (a norm's shift makes it redundant).

    ``padding``: ``None`` pads ``(kernel_size - 1) // 2 * dilation`` on every side (PyTorch's
    convention); an int pads that much; ``"tf"`` pads as TensorFlow's ``"SAME"`` (a ``TFSamePad2d``
    child ``pad`` in front of an unpadded conv; ``input_size`` fixes its pads for that size); four
    ints ``(left, right, top, bottom)`` pad exactly that (Keras' explicit ``ZeroPadding2D``). Neither
    ``pad`` child has parameters, so the state dict is the same for every padding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: Union[int, str, tuple[int, int, int, int], None] = None, groups: int = 1,
                 dilation: int = 1, norm="batch", act="relu", bias: Optional[bool] = None,
                 input_size: Optional[int] = None):
        norm_layer, act_layer = get_norm_layer(norm), get_act_layer(act)
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        super().__init__()
        if padding == "tf" and (kernel_size == 1 or stride == 1 and (kernel_size - 1) * dilation % 2 == 0):
            padding = (kernel_size - 1) // 2 * dilation  # TensorFlow's "SAME" is symmetric here: no pad layer
        self.pad: nn.Module  # only with "tf" or four pads
        if padding == "tf":
            self.pad, padding = TFSamePad2d(kernel_size, stride, dilation, input_size), 0
        elif isinstance(padding, (tuple, list)) and len(padding) == 4:
            left, right, top, bottom = padding
            self.pad, padding = nn.ZeroPad2d((left, right, top, bottom)), 0
        elif isinstance(padding, str):
            raise ValueError(f"unknown padding {padding!r}: an int, 'tf' or (left, right, top, bottom)")
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                           dilation=dilation, groups=groups, bias=bias)
        if norm_layer is not None:
            self.norm = norm_layer(out_channels)
        if act_layer is not None:
            self.act = act_layer()
        self.in_channels, self.out_channels = in_channels, out_channels
