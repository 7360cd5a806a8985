"""The ``cnnzoo`` command line: a thin layer over the Python API.

Each subcommand lives in its own module here and exposes ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Commands that build models set ``TAKES_MODEL_OVERRIDES = True``: any
``--name value`` they do not know themselves is passed to the model (``--width-mult 0.5``,
``--norm group``, ``--drop-rate 0.2``) and checked by the registry.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from typing import Optional, Sequence

from cnnzoo.cli.common import overrides_from_extra_args
from cnnzoo.errors import UserError

# Order is the order `cnnzoo --help` lists them in.
COMMANDS = ("list", "summary", "profile", "sweep", "train", "lr-find", "evaluate", "predict", "generate", "forecast",
            "features", "show-batch", "compare", "export")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _command_module(name: str):
    return importlib.import_module(f"cnnzoo.cli.{name.replace('-', '_')}_cmd")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="cnnzoo",
        description="Classic CNNs (VGG, GoogLeNet, ResNet, MobileNet v1/v2, DenseNet): "
                    "build, count, train, compare.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name in COMMANDS:
        module = _command_module(name)
        modules[name] = module
        cmd_parser = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(cmd_parser)
    return parser, modules


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    # A warning meant for the user ("the head was re-initialised with 5 classes") reads as one line,
    # without the source line Python's default format adds.
    return f"cnnzoo: warning: {message}\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    warnings.formatwarning = _one_line_warning
    parser, modules = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    module = modules[args.command]
    if getattr(module, "TAKES_MODEL_OVERRIDES", False):
        try:
            args.extra_model_args = overrides_from_extra_args(extra)
        except UserError as err:
            parser.error(str(err))
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(module.run(args) or EXIT_OK)
    except UserError as err:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every process has it; rank 0 says it
            print(f"cnnzoo {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\ncnnzoo {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `cnnzoo list | head`: the reader has gone, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return EXIT_OK
