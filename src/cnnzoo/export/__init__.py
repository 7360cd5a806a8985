"""Export trained models (ONNX, torch.export, int8), prove they compute what the eager model does,
and time them where they will run.

    from cnnzoo.export import export_model, fold_bn, prepare_runtime
    report = export_model("runs/a/best.pt", "onnx", quantize="int8", calibration="data/flowers")
    folded = fold_bn(model)                              # batch norm merged into the convolutions
    ort = prepare_runtime("resnet18", "int8")            # exported, quantised, verified
    ort.latency(batch_size=1)                            # a profiling.LatencyResult

onnx, onnxscript and onnxruntime are the optional ``[export]`` extra; without them ONNX and int8
say what to install, and fold_bn, pt2 and the torch runtimes still work.
"""
import importlib
from typing import Any

# Loaded on first use (PEP 562): the exporters bring onnx and onnxruntime, costly imports that the
# command line, which lists `cnnzoo export`'s choices (cnnzoo.export.formats) on every run, must not pay.
_HOMES = {
    "CalibrationData": "calibration", "load_calibration": "calibration",
    "CpuInfo": "cpu", "cpu_info": "cpu",
    "conv_bn_pairs": "fold", "fold_bn": "fold",
    "FORMATS": "formats", "QUANTIZATIONS": "formats", "RUNTIMES": "formats",
    "export_onnx": "onnx_export", "read_onnx_metadata": "onnx_export",
    "ExportReport": "pipeline", "export_model": "pipeline",
    "export_pt2": "pt2", "load_pt2": "pt2",
    "quantize_int8": "quantize",
    "OnnxRuntimeModule": "runtimes", "PreparedRuntime": "runtimes",
    "prepare_runtime": "runtimes", "runtime_latency": "runtimes",
    "ModelSource": "source", "load_source": "source",
    "ExportError": "verify", "Int8Accuracy": "verify", "Verification": "verify", "VerificationError": "verify",
}
__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'cnnzoo.export' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cnnzoo.export.{_HOMES[name]}"), name)
