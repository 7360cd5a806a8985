"""Where a model runs after export, and how fast: eager PyTorch, eager with batch norm folded and
channels-last, onnxruntime fp32 and onnxruntime int8, timed by the same method as
:func:`cnnzoo.profiling.measure_latency` (it times them all: an onnxruntime session or a
torch.export program is wrapped as an ``nn.Module``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from cnnzoo.checkpoint import Checkpoint
from cnnzoo.data import DataSplits
from cnnzoo.errors import UserError
from cnnzoo.export.calibration import CALIBRATION_IMAGES, calibration_for
from cnnzoo.export.extra import onnxruntime, require_export_extra
from cnnzoo.export.fold import fold_bn
from cnnzoo.export.formats import RUNTIMES
from cnnzoo.export.onnx_export import export_onnx
from cnnzoo.export.quantize import quantize_int8
from cnnzoo.export.source import load_source
from cnnzoo.export.verify import (
    MIN_AGREEMENT,
    Int8Accuracy,
    Verification,
    random_batches,
    verify_exported,
)
from cnnzoo.profiling import LatencyResult, measure_latency

RUNTIME_LABELS = {
    "torch": "PyTorch eager",
    "torch-folded": "PyTorch eager, BN folded, channels-last",
    "onnxruntime": "onnxruntime fp32",
    "int8": "onnxruntime int8",
    "pt2": "torch.export program",
}


class OnnxRuntimeModule(nn.Module):
    """An onnxruntime CPU session behind ``nn.Module``'s call (tensor in, tensor out), so that the
    verification and the latency code treat every runtime alike. ``threads`` is fixed when the
    session is made (0 = onnxruntime's choice, one per physical core)."""

    def __init__(self, model: bytes, threads: Optional[int] = None):
        super().__init__()
        require_export_extra("onnxruntime")
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1  # one image graph: parallelism is inside each operator
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.threads = threads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().float().contiguous().numpy()})[0]
        return torch.from_numpy(out)


class ExportedProgramModule(nn.Module):
    """A ``torch.export`` program behind ``nn.Module``'s call. Its own ``module()`` refuses
    ``eval()``/``train()``, which the timing code calls; this wrapper holds it out of reach of both."""

    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__()
        object.__setattr__(self, "_run", program.module())  # not a registered child: see above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        run: nn.Module = self.__dict__["_run"]  # set above, outside nn.Module's registry
        return run(x)


@dataclass
class PreparedRuntime:
    """A model made ready to run under one runtime: ``module(x)`` runs it, ``latency(b)`` times it."""
    runtime: str
    module: nn.Module
    input_size: tuple
    threads: int
    channels_last: bool = False
    verification: Optional[Verification] = None
    file_bytes: Optional[int] = None      # the serialised model's size (onnxruntime runtimes)
    accuracy: Optional[Int8Accuracy] = None  # int8 on labelled data
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return RUNTIME_LABELS.get(self.runtime, self.runtime)

    def latency(self, batch_size: int = 1, *, repeats: int = 20, warmup: int = 3) -> LatencyResult:
        """Median seconds per forward of ``batch_size`` random inputs, with this runtime's threads."""
        result = measure_latency(self.module, self.input_size, batch_size, repeats=repeats, warmup=warmup,
                                 device="cpu", channels_last=self.channels_last, threads=self.threads)
        if isinstance(self.module, (OnnxRuntimeModule, ExportedProgramModule)):
            # measure_latency counts the module's parameters and torch's tensors: onnxruntime's own
            # arena is invisible to it, and the program's weights are not the wrapper's parameters.
            result = replace(result, peak_memory_bytes=None)
        return result


def default_threads(threads: Optional[int]) -> int:
    """The thread count every runtime of one comparison uses: ``threads``, else torch's current one."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise UserError(f"threads must be a whole number of at least 1, got {threads!r}")
    return threads or torch.get_num_threads()


def prepare_runtime(model: Union[str, os.PathLike, Checkpoint, nn.Module], runtime: str = "onnxruntime", *,
                    input_size: Optional[tuple] = None, image_size: Optional[int] = None,
                    threads: Optional[int] = None, calibration: Union[None, str, os.PathLike, DataSplits] = None,
                    calibration_images: int = CALIBRATION_IMAGES, verify: bool = True,
                    min_agreement: float = MIN_AGREEMENT, class_names: Optional[Sequence[str]] = None,
                    **overrides: Any) -> PreparedRuntime:
    """``model`` (a registered name, a checkpoint path or record, or an ``nn.Module`` with ``input_size``)
    ready to run under ``runtime`` (one of :data:`RUNTIMES`), exported with a dynamic batch and
    verified against eager PyTorch (``verify``): a failed verification raises ``VerificationError``.

    ``int8`` calibrates on ``calibration`` (a data source or loaded splits): by default a checkpoint's
    own training data, and random inputs for random weights (then only the speed means something).
    ``class_names`` (an ``nn.Module``'s classes) lets int8 be scored on labelled calibration data.
    """
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    threads = default_threads(threads)
    source = load_source(model, image_size=image_size, input_size=input_size, class_names=class_names, **overrides)
    if runtime == "torch":
        return PreparedRuntime(runtime, source.model, source.input_size, threads)
    folded = fold_bn(source.model)
    if runtime == "torch-folded":  # the model itself: folding is exact (tests check every model)
        return PreparedRuntime(runtime, folded.to(memory_format=torch.channels_last), source.input_size, threads,
                               channels_last=True)
    require_export_extra(f"the {runtime} runtime")
    proto = export_onnx(folded, source.input_size, dynamic_batch=True, metadata=source.metadata())
    data = None
    if runtime == "int8":
        data = calibration_for(source, calibration, calibration_images)
        batches = data.calibration_batches() if data else random_batches(source.input_size, 32, (8,), seed=1)
        proto = quantize_int8(proto, batches)
    model_bytes = proto.SerializeToString()
    prepared = PreparedRuntime(runtime, OnnxRuntimeModule(model_bytes, threads), source.input_size, threads,
                               file_bytes=len(model_bytes))
    if verify:
        verification, outputs = verify_exported(source.model, prepared.module, source.input_size, data,
                                                label=prepared.label, quantized=runtime == "int8",
                                                min_agreement=min_agreement)
        prepared.verification = verification.raise_if_failed()
        if data is not None and data.labels is not None:
            prepared.accuracy = Int8Accuracy.measure(outputs, data.labels)
    if runtime == "int8" and data is None:
        prepared.notes.append("calibrated on random inputs (random weights): its speed is real, its accuracy is not")
    return prepared


def runtime_latency(model: Union[str, os.PathLike, Checkpoint, nn.Module], runtime: str = "onnxruntime",
                    input_size: Optional[tuple] = None, batch_size: int = 1, *, repeats: int = 20,
                    warmup: int = 3, threads: Optional[int] = None, calibration=None,
                    **overrides: Any) -> LatencyResult:
    """:func:`cnnzoo.profiling.measure_latency` under ``runtime``: export (verified), then time.
    To time several batch sizes, call :func:`prepare_runtime` once and its ``latency`` for each."""
    prepared = prepare_runtime(model, runtime, input_size=input_size, threads=threads, calibration=calibration,
                               **overrides)
    return prepared.latency(batch_size, repeats=repeats, warmup=warmup)
