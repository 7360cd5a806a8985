"""cnnzoo: the classic convolutional networks in readable PyTorch.

    import cnnzoo
    model = cnnzoo.create_model("mobilenet_v2", num_classes=5, width_mult=0.5)
    print(cnnzoo.summary(model, input_size=(3, 96, 96)))

In a notebook, end a cell with ``cnnzoo.summary(...)``, ``cnnzoo.train(...)``, ``cnnzoo.evaluate(...)``,
``cnnzoo.compare(...)`` or ``cnnzoo.show_batch(...)`` and it shows itself (tables, curves, images).
"""
import cnnzoo.models  # noqa: F401  (registers every family; the registry itself imports no model)
from cnnzoo.factory import create_model
from cnnzoo.registry import get_model_info, list_models

__version__ = "0.1.0"

# Heavier entry points are imported on first use: `cnnzoo list` and `cnnzoo summary` should not pay
# for training, data loading (scikit-learn, PIL) and comparison, which are slow to import.
_LAZY = {
    "summary": "cnnzoo.profiling",
    "train": "cnnzoo.training",
    "evaluate": "cnnzoo.training",
    "compare": "cnnzoo.compare",
    "show_batch": "cnnzoo.data",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnzoo' has no attribute {name!r}")


__all__ = ["create_model", "list_models", "get_model_info", "summary", "train", "evaluate", "compare", "show_batch",
           "__version__"]
