"""Devices and CPU threads: the one place that turns a user's ``--device``/``--threads`` into torch state.

Training, evaluation, prediction, latency timing and export all go through these helpers, so
"auto", the error for a missing GPU and the rule "a library call leaves torch's thread count as it
found it" are written once.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional, Union

import torch

from cnnzoo.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def pick_device(device: Union[str, torch.device] = "auto") -> torch.device:
    """``"auto"`` (CUDA when PyTorch sees a GPU, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:1"``;
    a clear :class:`UserError` for a device this machine lacks or torch does not know."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise UserError(f"unknown device {device!r} ({err}); use one of {', '.join(DEVICES)}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {str(device)!r} was asked for but PyTorch sees no CUDA GPU; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"device {str(device)!r} is not supported; use one of {', '.join(DEVICES)}")
    return dev


@contextlib.contextmanager
def num_threads(threads: Optional[int]) -> Iterator[int]:
    """Run the block with torch's intra-op thread count set to ``threads`` (unchanged when ``None``),
    then restore it: a library call leaves the process as it found it. Yields the count in force."""
    before = torch.get_num_threads()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise UserError(f"threads must be a whole number of at least 1, got {threads!r}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def make_deterministic(device: torch.device) -> None:
    """Ask CUDA for deterministic kernels, so a resumed GPU run matches an uninterrupted one bit for
    bit. CPU kernels are deterministic for a fixed thread count already."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def autocast(device: torch.device, enabled: bool):
    """Mixed precision when ``enabled``: bfloat16 on the CPU (no float16 kernels worth having
    there), float16 on CUDA; a no-op context otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def native_bfloat16() -> bool:
    """Whether this CPU does bfloat16 arithmetic in hardware (AVX512-BF16 or AMX), where oneDNN's
    bfloat16 convolutions can outrun float32. Elsewhere bfloat16 is emulated and slower, so it is not
    worth even timing. (torch exposes the check only under a private name; a torch without it: no.)"""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (CUDA runs asynchronously); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
