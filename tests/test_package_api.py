"""The package's top-level API: the lazily imported entry points stay what they are named."""
import importlib
import subprocess
import sys

import cnnzoo


def test_compare_stays_callable_once_its_package_is_imported(monkeypatch):
    importlib.import_module("cnnzoo.compare.runner")  # binds cnnzoo.compare to the package
    package = sys.modules["cnnzoo.compare"]
    assert cnnzoo.compare is package or cnnzoo.compare is package.compare
    calls = []
    monkeypatch.setattr(package, "compare", lambda *args, **kwargs: calls.append((args, kwargs)) or "result")
    assert package(["resnet18"], epochs=1) == "result" and calls == [((["resnet18"],), {"epochs": 1})]


def test_entry_points_resolve_in_a_fresh_interpreter():
    code = ("import cnnzoo, inspect; names = ['summary', 'train', 'evaluate', 'compare', 'show_batch'];"
            "print([callable(getattr(cnnzoo, n)) for n in names]); import cnnzoo.compare.report;"
            "print(callable(cnnzoo.compare))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[True, True, True, True, True]" and out[1] == "True"
