"""The command-line frame: help, exit codes, model overrides passed through."""
import pytest

from cnnzoo.cli import main
from cnnzoo.cli.common import overrides_from_extra_args
from cnnzoo.errors import UserError


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("list", "summary", "train", "compare"):
        assert command in out


def test_list_prints_every_model(capsys):
    import cnnzoo

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in cnnzoo.list_models():
        assert name in out


def test_list_with_unmatched_pattern_fails(capsys):
    assert main(["list", "nosuchmodel*"]) == 1


def test_extra_args_become_model_overrides():
    assert overrides_from_extra_args(["--growth-rate", "12", "--aux-logits", "--norm=group"]) == {
        "growth_rate": 12, "aux_logits": True, "norm": "group"}


def test_extra_positional_is_an_error():
    with pytest.raises(UserError):
        overrides_from_extra_args(["stray"])


def test_output_cut_short_by_the_reader_is_not_an_error():
    import subprocess
    import sys

    # DenseNet-201's table (300 KB) outlasts the pipe's buffer, so the write fails once head has gone
    result = subprocess.run(f"'{sys.executable}' -m cnnzoo summary densenet201 | head -1", shell=True,
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() and "Error" not in result.stderr, result.stderr
