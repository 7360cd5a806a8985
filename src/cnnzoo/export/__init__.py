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
from cnnzoo.export.calibration import CalibrationData, load_calibration
from cnnzoo.export.cpu import CpuInfo, cpu_info
from cnnzoo.export.fold import conv_bn_pairs, fold_bn
from cnnzoo.export.onnx_export import export_onnx, read_onnx_metadata
from cnnzoo.export.pipeline import FORMATS, ExportReport, export_model
from cnnzoo.export.pt2 import export_pt2, load_pt2
from cnnzoo.export.quantize import quantize_int8
from cnnzoo.export.runtimes import RUNTIMES, OnnxRuntimeModule, PreparedRuntime, prepare_runtime, runtime_latency
from cnnzoo.export.source import ModelSource, load_source
from cnnzoo.export.verify import ExportError, Verification, VerificationError

__all__ = ["export_model", "ExportReport", "FORMATS", "fold_bn", "conv_bn_pairs", "export_onnx",
           "read_onnx_metadata", "export_pt2", "load_pt2", "quantize_int8", "prepare_runtime", "runtime_latency",
           "PreparedRuntime", "RUNTIMES", "OnnxRuntimeModule", "cpu_info", "CpuInfo", "load_calibration",
           "CalibrationData", "load_source", "ModelSource", "Verification", "ExportError", "VerificationError"]
