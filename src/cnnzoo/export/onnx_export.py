"""ONNX through torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``), one self-contained
file: weights inside, not in a side file, and cnnzoo's metadata in ``metadata_props``."""
from __future__ import annotations

import os
from typing import Optional, Union

import torch
from torch import nn

from cnnzoo.errors import UserError
from cnnzoo.export.extra import onnx, require_export_extra
from cnnzoo.export.verify import ExportError

# The dynamo exporter has no operator below opset 18: asked for less, it warns, tries the ONNX
# version converter and, when that fails (it does on our models), silently keeps 18. Refuse instead.
MIN_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "images", "logits"


def check_opset(opset: Optional[int]) -> None:
    if opset is None:
        return
    require_export_extra()
    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= latest:
        raise UserError(f"--opset must be between {MIN_OPSET} (the oldest the dynamo exporter writes) and "
                        f"{latest} (the newest this onnx knows); got {opset!r}")


def batch_dimension(dynamic_batch: bool) -> Optional[tuple]:
    """``dynamic_shapes`` for a model whose one input may take any batch size (or none: static)."""
    return ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None


def example_input(input_size, dynamic_batch: bool) -> torch.Tensor:
    # Batch 2 for a dynamic batch: torch.export specialises a dimension traced at 1 to the constant 1.
    return torch.randn(2 if dynamic_batch else 1, *input_size)


def export_onnx(model: Union[nn.Module, torch.export.ExportedProgram], input_size, *, opset: Optional[int] = None,
                dynamic_batch: bool = False, metadata: Optional[dict[str, str]] = None) -> "onnx.ModelProto":
    """``model`` (eval mode, CPU) as an ONNX model taking ``images`` ``[N, *input_size]`` (N fixed
    at 1 unless ``dynamic_batch``) and returning ``logits``. ``opset`` defaults to torch's. An
    ``ExportedProgram`` (from :func:`cnnzoo.export.export_pt2`) is converted without tracing again;
    its batch is what it was exported with."""
    require_export_extra()
    check_opset(opset)
    args: tuple
    if isinstance(model, torch.export.ExportedProgram):
        args, dynamic_shapes = (), None
    else:
        model = model.eval()
        args, dynamic_shapes = (example_input(input_size, dynamic_batch),), batch_dimension(dynamic_batch)
    try:
        program = torch.onnx.export(model, args, dynamo=True, external_data=False, opset_version=opset,
                                    verbose=False, dynamic_shapes=dynamic_shapes,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    except Exception as err:  # the exporter raises many types; all mean "this model did not export"
        raise ExportError(f"torch.onnx.export failed: {type(err).__name__}: {err}") from err
    if program is None:  # torch returns None only for the TorchScript exporter (dynamo=False)
        raise ExportError("torch.onnx.export returned no ONNX program")
    proto = strip_node_metadata(program.model_proto)
    written = opset_of(proto)
    if opset is not None and written != opset:
        raise ExportError(f"asked for opset {opset}, the exporter wrote {written}")
    if metadata:
        onnx.helper.set_model_props(proto, metadata)
    return proto


def strip_node_metadata(proto: "onnx.ModelProto") -> "onnx.ModelProto":
    """Drop what the exporter records on every node (the Python stack trace, with this machine's file
    paths, and the FX node): 70-90 KB on a ResNet-18, a quarter of a small int8 file. The model's
    own ``metadata_props`` stay."""
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    return proto


def opset_of(proto: "onnx.ModelProto") -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def read_onnx_metadata(path: Union[str, os.PathLike]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (cnnzoo's keys start with ``cnnzoo.``)."""
    require_export_extra()
    proto = onnx.load(os.fspath(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}
