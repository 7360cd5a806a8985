"""The package's layering (docs/design.md) and lint configuration are enforced, not only described.

import-linter's contracts live in pyproject.toml; these tests run them on the real package and on a
copy with one forbidden import added, so a contract that can no longer fail is noticed too.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "cnnzoo"


def lint_imports(src_root: Path, cwd: Path) -> subprocess.CompletedProcess:
    # A subprocess: grimp imports nothing, but it finds the package through sys.path, which the
    # copy below must lead.
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(src_root), "PATH": "/usr/bin:/bin"})


def test_layering_contracts_hold():
    result = lint_imports(ROOT / "src", ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, forbidden, message", [
    # a model file imports training
    ("models/resnet.py", "import cnnzoo.training.trainer", "cnnzoo.models is not allowed to import cnnzoo.training"),
    # the registry imports a model
    ("registry.py", "import cnnzoo.models.vgg", "cnnzoo.registry is not allowed to import cnnzoo.models"),
])
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, forbidden, message):
    copy = tmp_path / "src" / "cnnzoo"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{forbidden}  # noqa\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = lint_imports(tmp_path / "src", tmp_path)
    assert result.returncode != 0, result.stdout
    assert message in result.stdout, result.stdout


def test_ruff_is_clean_on_the_package():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "src"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean_on_the_package():
    # The files, the strictness and the ignored third-party stubs come from [tool.mypy] in
    # pyproject.toml, so running mypy by hand checks exactly what this test checks.
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
