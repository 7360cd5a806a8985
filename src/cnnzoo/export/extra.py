"""The optional ``[export]`` extra: onnx, onnxscript (torch's dynamo exporter needs it) and onnxruntime.

They are imported here once, at the top; when they are absent the names are ``None`` and
:func:`require_export_extra` tells the user what to install, so ``import cnnzoo.export`` (fold_bn,
pt2, the torch runtimes) still works without them. onnxscript is only looked up, not imported: torch
imports it itself when exporting, and it is the costliest of the three to import
(``python -X importtime -c "import onnxscript"`` shows by how much).
"""
from __future__ import annotations

from importlib.util import find_spec

from cnnzoo.errors import UserError

try:
    import onnx
    import onnxruntime
    import onnxruntime.quantization as ort_quantization
except ImportError:  # the extra is not installed: require_export_extra() says so when it is needed
    # the modules or None: mypy sees the modules' types; every use first calls require_export_extra()
    onnx = onnxruntime = ort_quantization = None  # type: ignore[assignment]

EXTRA_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
INSTALL_HINT = "pip install 'cnnzoo[export]'"


def missing_packages() -> list[str]:
    return [name for name in EXTRA_PACKAGES if find_spec(name) is None]


def require_export_extra(what: str = "ONNX export") -> None:
    """Raise :class:`UserError` naming the missing packages and the extra that brings them."""
    missing = missing_packages()
    if missing or onnx is None or onnxruntime is None:
        names = ", ".join(missing) or "onnx/onnxruntime (they failed to import)"
        raise UserError(f"{what} needs {names}, which are not installed: {INSTALL_HINT}")
