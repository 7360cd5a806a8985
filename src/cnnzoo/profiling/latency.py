"""Wall-clock latency and throughput of a model, and this machine's matrix-multiply peak.

Method (as timm's ``benchmark.py``): ``inference_mode``, a few warm-up passes (first calls pay for
allocation and kernel selection), then ``repeats`` timed passes; report the median and the
inter-quartile range, which a single slow outlier (another process on a shared machine) does
not move. CUDA work is asynchronous, so each timed pass ends with a synchronise.
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Optional, Union

import torch
from torch import nn

from cnnzoo.devices import num_threads, pick_device, synchronize
from cnnzoo.errors import UserError
from cnnzoo.factory import create_model
from cnnzoo.profiling.counting import example_input, peak_live_tensor_bytes


@dataclass
class LatencyResult:
    """Seconds per forward pass of ``batch_size`` images (median over ``repeats`` after warm-up)."""
    batch_size: int
    device: str
    threads: int
    channels_last: bool
    repeats: int
    warmup: int
    median_s: float
    spread_s: float                 # inter-quartile range of the repeats
    # Peak tensor memory of one forward pass: on CUDA the allocator's peak; on CPU parameters +
    # buffers + input + the most activation bytes alive at once (counted op by op).
    peak_memory_bytes: Optional[int]
    times_s: list = field(default_factory=list)

    @property
    def per_image_s(self) -> float:
        return self.median_s / self.batch_size

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.median_s

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(per_image_s=self.per_image_s, images_per_s=self.images_per_s)
        return d


def resolve_device(device) -> torch.device:
    """A device to time on: as :func:`cnnzoo.devices.pick_device` ("auto" included)."""
    return pick_device(device)


def _iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[2] - q[0]


def measure_latency(model: Union[nn.Module, str], input_size=(3, 224, 224), batch_size: int = 1, *,
                    repeats: int = 20, warmup: int = 3, device="cpu", channels_last: bool = False,
                    threads: Optional[int] = None) -> LatencyResult:
    """Time ``model`` on random input of ``(batch_size, *input_size)``.

    The model is moved to ``device`` (and to channels-last memory format if asked) in place, as
    ``model.to`` does, and put in eval mode for the timing; its train/eval mode is restored after.
    ``threads`` sets torch's intra-op threads for the measurement only.
    """
    if isinstance(model, str):
        model = create_model(model)
    if repeats < 1 or warmup < 0 or batch_size < 1:
        raise UserError(f"need repeats >= 1, warmup >= 0 and batch_size >= 1 "
                        f"(got {repeats}, {warmup}, {batch_size})")
    dev = resolve_device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(dev).to(memory_format=memory_format)
    x = example_input(model, input_size, batch_size, dev, torch.randn)  # sequence models: their own input
    x = x.contiguous(memory_format=memory_format) if x.dim() == 4 else x
    was_training = model.training
    model.eval()
    try:
        with num_threads(threads) as n_threads, torch.inference_mode():
            for _ in range(warmup):
                model(x)
            synchronize(dev)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                synchronize(dev)
                times.append(time.perf_counter() - start)
            peak = _peak_memory(model, x, dev)
    finally:
        model.train(was_training)
    return LatencyResult(batch_size=batch_size, device=str(dev), threads=n_threads,
                         channels_last=channels_last, repeats=repeats, warmup=warmup,
                         median_s=statistics.median(times), spread_s=_iqr(times),
                         peak_memory_bytes=peak, times_s=times)


def _peak_memory(model: nn.Module, x: torch.Tensor, dev: torch.device) -> int:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        model(x)
        synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev))
    resident = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return resident + x.numel() * x.element_size() + peak_live_tensor_bytes(model, x)


@contextmanager
def _matmul_precision_like_convs(dev: torch.device):
    # On CUDA, cuDNN convolutions use TF32 by default (torch.backends.cudnn.allow_tf32) while
    # matmuls do not; measure the yardstick at the precision the convolutions run at, or a
    # model's "fraction of peak" could exceed 100%.
    if dev.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def measure_matmul_peak(device="cpu", size: int = 2048, repeats: int = 5,
                        threads: Optional[int] = None) -> float:
    """This machine's achievable fp32 GFLOP/s: the median over ``repeats`` of a ``size`` x ``size``
    matrix multiply (2 * size**3 FLOPs each). The yardstick for "what fraction of the hardware
    does a model use". On CUDA it runs with TF32 exactly when cuDNN convolutions do."""
    dev = resolve_device(device)
    a = torch.randn(size, size, device=dev)
    b = torch.randn(size, size, device=dev)
    with num_threads(threads), _matmul_precision_like_convs(dev), torch.inference_mode():
        a @ b  # warm-up
        synchronize(dev)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            synchronize(dev)
            times.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(times) / 1e9
