"""``.pt2`` through ``torch.export``: the graph and weights as an ``ExportedProgram``, the modern
replacement for TorchScript (AOTInductor and ExecuTorch start from it). cnnzoo's metadata travels
as an extra file, ``cnnzoo.json``, inside the archive."""
from __future__ import annotations

import copy
import io
import json
import os
from typing import Optional, Union

import torch
from torch import nn

from cnnzoo.export.onnx_export import batch_dimension, example_input
from cnnzoo.export.verify import ExportError

METADATA_FILE = "cnnzoo.json"


def export_pt2(model: nn.Module, input_size, *, dynamic_batch: bool = False) -> torch.export.ExportedProgram:
    """``model`` (eval mode, CPU) traced by ``torch.export`` at ``[N, *input_size]`` (N = 1 unless
    ``dynamic_batch``), without the submodules inference never calls."""
    example = example_input(input_size, dynamic_batch)
    try:
        return torch.export.export(without_unused_modules(model.eval(), example), (example,),
                                   dynamic_shapes=batch_dimension(dynamic_batch))
    except Exception as err:  # torch.export raises many types; all mean "this model did not export"
        raise ExportError(f"torch.export failed: {type(err).__name__}: {err}") from err


def without_unused_modules(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` where every submodule that holds weights but that a forward pass on
    ``example`` never calls (GoogLeNet's training-only auxiliary heads) is an ``nn.Identity``.
    ``torch.export`` keeps every parameter of the module it is given, used or not (17 MB of a 41 MB
    GoogLeNet file); the ONNX exporter drops them itself."""
    called = set()
    hooks = [m.register_forward_pre_hook(lambda m, args: called.add(id(m))) for m in model.modules()]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    # A container may be iterated rather than called (GoogLeNet walks its blocks): unused means
    # nothing inside it ran either.
    unused = [name for name, m in model.named_modules()
              if name and not any(id(sub) in called for sub in m.modules()) and any(True for _ in m.parameters())]
    unused = [name for name in unused if not any(name.startswith(u + ".") for u in unused)]  # outermost only
    if not unused:
        return model
    model = copy.deepcopy(model)
    for name in unused:
        model.set_submodule(name, nn.Identity())
    return model


def pt2_bytes(program: torch.export.ExportedProgram, metadata: Optional[dict[str, str]] = None) -> bytes:
    """The ``.pt2`` archive ``torch.export.save`` writes, with ``metadata`` as ``cnnzoo.json``."""
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={METADATA_FILE: json.dumps(metadata or {})})
    return buffer.getvalue()


def load_pt2(source: Union[str, os.PathLike, bytes]) -> tuple[torch.export.ExportedProgram, dict[str, str]]:
    """A ``.pt2`` file (or its bytes) -> the program and cnnzoo's metadata."""
    extra = {METADATA_FILE: ""}
    f = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
    program = torch.export.load(f, extra_files=extra)
    return program, json.loads(extra[METADATA_FILE] or "{}")
