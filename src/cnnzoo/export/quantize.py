"""int8 post-training static quantisation for the CPU, through onnxruntime.

The supported path (torch's eager/FX quantisation is deprecated, PT2E moved to torchao):
``quant_pre_process`` (shape inference and onnxruntime's graph optimisations, which fold what batch
norm is left), then ``quantize_static`` in the QDQ format with per-channel int8 weights and uint8
activations whose ranges are the min/max seen on calibration images. onnxruntime then runs the
QuantizeLinear/DequantizeLinear pairs around each convolution as one integer convolution, which is
where the speed comes from (VNNI/AMX dot products on x86; none without them).

Biases stay float32 in the file (``QuantizeBias: False``); onnxruntime quantises them to int32 with
the input and weight scales when it fuses the convolution, which is the int32 bias the quantiser
would have written, so outputs and speed are unchanged (identical logits, the same QLinearConv/QGemm
graph; benchmarks/bench_export.py times it). What changes is the file: a quantised bias costs its
int32 values plus a float32 scale and an int32 zero point per channel, 12 bytes a channel instead
of 4. In a narrow network that is most of the overhead beside the int8 weights:
MobileNetV2 x0.5 with 5 classes went from 33 % to 30 % of the fp32 file.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import torch

from cnnzoo.export.extra import onnx, ort_quantization, require_export_extra
from cnnzoo.export.onnx_export import strip_node_metadata


class _Batches:
    """onnxruntime's ``CalibrationDataReader``: one input dict per batch, then ``None``."""

    def __init__(self, input_name: str, batches: Iterator[np.ndarray]):
        self.input_name, self.batches = input_name, batches

    def get_next(self) -> Optional[dict]:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def _fixed_batch(proto: "onnx.ModelProto") -> Optional[int]:
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def _numpy_batches(batches: Iterable[torch.Tensor], fixed_batch: Optional[int]) -> Iterator[np.ndarray]:
    for x in batches:
        x = x.detach().cpu().float().contiguous()
        # A model exported with a fixed batch takes only that many images per run.
        for part in (x.split(fixed_batch) if fixed_batch else (x,)):
            if fixed_batch is None or len(part) == fixed_batch:
                yield part.numpy()


def quantize_int8(proto: "onnx.ModelProto", calibration_batches: Iterable[torch.Tensor]) -> "onnx.ModelProto":
    """``proto`` (an fp32 ONNX model with one image input) quantised to int8 QDQ with activation ranges
    from ``calibration_batches`` (normalised image tensors, as the model takes them)."""
    require_export_extra("int8 quantisation")
    q = ort_quantization
    input_name = proto.graph.input[0].name
    reader = _Batches(input_name, _numpy_batches(calibration_batches, _fixed_batch(proto)))
    with tempfile.TemporaryDirectory(prefix="cnnzoo-int8-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        q.quant_pre_process(proto, prepared)
        # MinMax calibration adds a ReduceMin/ReduceMax after every tensor and keeps only those scalars
        # per batch, so memory stays small however many images there are. (Its option
        # CalibMaxIntermediateOutputs is left alone: in onnxruntime 1.32 it drops the batches it should
        # merge, onnxruntime issue #18893.)
        q.quantize_static(prepared, quantized, reader, quant_format=q.QuantFormat.QDQ, per_channel=True,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          calibrate_method=q.CalibrationMethod.MinMax, extra_options={"QuantizeBias": False})
        return strip_node_metadata(onnx.load(quantized))
