"""``export_model``: one export from start to finish, as ``cnnzoo export`` runs it.

Load (a checkpoint or a model by name) -> fold batch norm -> export (ONNX or pt2) -> quantise
(int8, ONNX only) -> load the serialised bytes back and verify them against the eager model ->
write the file (only now, atomically: a file at ``out`` has passed) -> time eager and exported.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from cnnzoo.checkpoint import Checkpoint
from cnnzoo.data import DataSplits
from cnnzoo.errors import UserError
from cnnzoo.export.calibration import CALIBRATION_IMAGES, calibration_for
from cnnzoo.export.cpu import cpu_info
from cnnzoo.export.extra import onnx, require_export_extra
from cnnzoo.export.fold import count_batch_norms, fold_bn
from cnnzoo.export.formats import FORMATS, QUANTIZATIONS, SUFFIXES
from cnnzoo.export.onnx_export import check_opset, export_onnx, opset_of
from cnnzoo.export.pt2 import export_pt2, load_pt2, pt2_bytes
from cnnzoo.export.quantize import quantize_int8
from cnnzoo.export.runtimes import ExportedProgramModule, OnnxRuntimeModule, PreparedRuntime, default_threads
from cnnzoo.export.source import ModelSource, load_source
from cnnzoo.export.verify import (
    MIN_AGREEMENT,
    Int8Accuracy,
    Verification,
    VerificationError,
    verify_exported,
)
from cnnzoo.files import atomic_write_bytes

__all__ = ["export_model", "ExportReport", "FORMATS", "QUANTIZATIONS", "default_output", "check_request"]



@dataclass
class ExportReport:
    path: str
    format: str                     # "onnx" or "pt2"
    quantize: Optional[str]         # "int8" or None
    source: str                     # what was exported, e.g. "resnet18 from runs/a/best.pt"
    input_size: tuple
    dynamic_batch: bool
    opset: Optional[int]            # ONNX only
    batch_norms_folded: int
    batch_norms_left: int           # norms with no convolution right before them (DenseNet's pre-activation)
    file_bytes: int
    weight_bytes: int               # the fp32 parameters and buffers
    checkpoint_bytes: Optional[int]  # the checkpoint file (optimizer state and history included)
    fp32_file_bytes: Optional[int]  # int8: the fp32 ONNX file it was quantised from
    verification: Verification
    accuracy: Optional[Int8Accuracy]  # int8 with labelled data
    calibration: Optional[str]
    threads: int
    cpu: dict
    latency: list[dict] = field(default_factory=list)  # {"runtime", "batch_size", "median_s", "spread_s"}
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy": self.accuracy.to_dict() if self.accuracy else None}


def default_output(source: ModelSource, fmt: str, quantize: Optional[str]) -> Path:
    """Beside the checkpoint (``best.pt`` -> ``best.onnx``), or ``<model name>.onnx`` here."""
    suffix = SUFFIXES[(fmt, quantize)]
    if source.checkpoint_path is not None:
        return source.checkpoint_path.with_name(source.checkpoint_path.stem + suffix)
    return Path(source.model_name + suffix)


def check_request(fmt: str, quantize: Optional[str], calibration, opset: Optional[int]) -> None:
    """Refuse a combination that cannot be exported, before anything is loaded."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UserError(f"unknown quantisation {quantize!r}; choose from {', '.join(QUANTIZATIONS)}")
    if quantize and fmt == "pt2":
        raise UserError("int8 is made by onnxruntime's quantiser: use --format onnx (PyTorch's own int8 "
                        "path for exported programs, PT2E, has moved out of torch into torchao)")
    if quantize and calibration is None:
        raise UserError("--quantize int8 needs --calibration-data: real images to measure activation ranges on")
    if calibration is not None and not quantize:
        raise UserError("--calibration-data is for --quantize int8")
    if opset is not None and fmt != "onnx":
        raise UserError("--opset is for --format onnx")
    if fmt == "onnx":
        require_export_extra("--format onnx")
        check_opset(opset)


def export_model(model: Union[str, os.PathLike, Checkpoint, nn.Module], fmt: str = "onnx", *,
                 out: Union[None, str, os.PathLike] = None, opset: Optional[int] = None,
                 dynamic_batch: bool = False, image_size: Optional[int] = None, quantize: Optional[str] = None,
                 calibration: Union[None, str, os.PathLike, DataSplits] = None,
                 calibration_images: int = CALIBRATION_IMAGES, min_agreement: float = MIN_AGREEMENT,
                 threads: Optional[int] = None, latency_batch: int = 32, repeats: int = 10, warmup: int = 2,
                 input_size: Optional[tuple] = None, **overrides: Any) -> ExportReport:
    """Export, verify, write and time ``model`` (a checkpoint path or record, a registered name with
    ``overrides``, or an ``nn.Module`` with ``input_size``). Raises ``VerificationError`` (and writes
    nothing) when the exported file does not compute what the eager model does."""
    check_request(fmt, quantize, calibration, opset)
    if latency_batch < 1 or repeats < 1 or warmup < 0:
        raise UserError(f"need latency batch >= 1, repeats >= 1, warmup >= 0 "
                        f"(got {latency_batch}, {repeats}, {warmup})")
    threads = default_threads(threads)
    source = load_source(model, image_size=image_size, input_size=input_size, **overrides)
    data = calibration_for(source, calibration, calibration_images) if quantize else None
    out = Path(out) if out is not None else default_output(source, fmt, quantize)
    if out.is_dir():
        example = out / default_output(source, fmt, quantize).name
        raise UserError(f"--out {str(out)!r} is a folder; name the file, e.g. {example}")

    folded = fold_bn(source.model)
    result = _export(folded, source, fmt, quantize, data, opset, dynamic_batch, threads)
    verification, outputs = verify_exported(source.model, result.module, source.input_size, data,
                                            label=result.label, quantized=bool(quantize),
                                            min_agreement=min_agreement, fixed_batch=None if dynamic_batch else 1)
    if not verification.passed:
        message = f"verification failed, nothing written: {verification.summary()}"
        if quantize and outputs.finite:
            # Not a broken export but int8's rounding flipping predictions that were close to a tie:
            # say what it costs, so that the user can decide whether to accept it.
            if data is not None and data.labels is not None:
                acc = Int8Accuracy.measure(outputs, data.labels)
                message += (f". Accuracy on those images: fp32 {acc.fp32:.1%}, int8 {acc.int8:.1%} "
                            f"({acc.became_wrong} became wrong, {acc.became_right} right)")
            message += (f". int8 flips predictions that are close to a tie between classes; to write the file "
                        f"anyway, lower the bar with --min-agreement (now {min_agreement:g})")
        raise VerificationError(message)
    atomic_write_bytes(out, result.payload)

    report = ExportReport(
        path=str(out), format=fmt, quantize=quantize, source=source.description, input_size=source.input_size,
        dynamic_batch=dynamic_batch, opset=result.opset,
        batch_norms_folded=count_batch_norms(source.model) - count_batch_norms(folded),
        batch_norms_left=count_batch_norms(folded), file_bytes=len(result.payload),
        weight_bytes=source.weight_bytes, checkpoint_bytes=source.checkpoint_bytes,
        fp32_file_bytes=len(result.fp32_payload) if result.fp32_payload else None, verification=verification,
        accuracy=None, calibration=data.describe() if data else None, threads=threads, cpu=cpu_info().to_dict())
    if data is not None and data.labels is not None:
        report.accuracy = Int8Accuracy.measure(outputs, data.labels, f"{data.evaluation_name} of {data.source}")
    elif data is not None:
        report.notes.append(f"accuracy not reported: {data.labels_note}")

    runtimes = [PreparedRuntime("torch", source.model, source.input_size, threads),
                PreparedRuntime("torch-folded", folded.to(memory_format=torch.channels_last), source.input_size,
                                threads, channels_last=True)]
    if result.fp32_payload is not None:
        runtimes.append(PreparedRuntime("onnxruntime", OnnxRuntimeModule(result.fp32_payload, threads),
                                        source.input_size, threads))
    runtimes.append(PreparedRuntime(result.label, result.module, source.input_size, threads))
    batch_sizes = (1, latency_batch) if dynamic_batch and latency_batch > 1 else (1,)
    if not dynamic_batch:
        report.notes.append(f"the file takes a fixed batch of 1, so latency is timed at batch 1 only "
                            f"(--dynamic-batch exports one that takes any batch, timed at 1 and {latency_batch})")
    for batch_size in batch_sizes:
        for runtime in runtimes:
            timed = runtime.latency(batch_size, repeats=repeats, warmup=warmup)
            report.latency.append({"runtime": runtime.label, "batch_size": batch_size,
                                   "median_s": timed.median_s, "spread_s": timed.spread_s})
    return report


@dataclass
class _Exported:
    payload: bytes                  # the file's bytes
    module: nn.Module               # those bytes loaded back, ready to run
    label: str
    opset: Optional[int]
    fp32_payload: Optional[bytes]   # int8: the fp32 ONNX it was quantised from


def _export(folded: nn.Module, source: ModelSource, fmt: str, quantize: Optional[str], data, opset: Optional[int],
            dynamic_batch: bool, threads: int) -> _Exported:
    metadata = {**source.metadata(), "cnnzoo.batch_norm": "folded into the convolution before it"}
    if fmt == "pt2":
        payload = pt2_bytes(export_pt2(folded, source.input_size, dynamic_batch=dynamic_batch), metadata)
        return _Exported(payload, ExportedProgramModule(load_pt2(payload)[0]), "torch.export program", None, None)
    proto = export_onnx(folded, source.input_size, opset=opset, dynamic_batch=dynamic_batch)
    fp32_payload = None
    if quantize:
        fp32_payload = proto.SerializeToString()
        proto = quantize_int8(proto, data.calibration_batches())
        metadata.update({"cnnzoo.quantization": "int8 static, QDQ, per-channel weights (onnxruntime)",
                         "cnnzoo.calibration": data.describe()})
    onnx.helper.set_model_props(proto, metadata)
    payload = proto.SerializeToString()
    label = "onnxruntime int8" if quantize else "onnxruntime fp32"
    return _Exported(payload, OnnxRuntimeModule(payload, threads), label, opset_of(proto), fp32_payload)
