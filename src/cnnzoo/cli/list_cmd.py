"""List the registered models with their family, default input size, published weights and paper."""
from __future__ import annotations

import argparse
import json
from typing import Any, Optional

from cnnzoo.pretrained import has_published_weights
from cnnzoo.pretrained_lite import has_lite_weights
from cnnzoo.registry import get_model_info, list_models
from cnnzoo.text import table

HELP = "list the models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'resnet*'")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    infos = [get_model_info(n) for n in list_models(args.pattern)]
    rows: list[dict[str, Any]] = [{"name": i.name, "family": i.family, "input_size": list(i.input_size),
                                   "published_weights": _published(i.name), "paper": i.paper} for i in infos]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no model matches {args.pattern!r}" if args.pattern else "no models registered")
        return 1
    print(table([(r["name"], r["family"], "x".join(map(str, r["input_size"])), r["published_weights"] or "-",
                  r["paper"]) for r in rows],
                ("model", "family", "input", "weights", "paper")))
    shown = {r["published_weights"] for r in rows}
    if "torchvision" in shown:
        print("\nweights: ImageNet weights published by torchvision, used with --weights torchvision")
    if LITE in shown:
        print(f"{'' if 'torchvision' in shown else chr(10)}{LITE}: ImageNet weights from the lite-weights "
              "packages, used with --weights imagenet")
    return 0


LITE = "imagenet (lite-weights)"


def _published(name: str) -> Optional[str]:
    if has_lite_weights(name):
        return LITE
    return "torchvision" if has_published_weights(name) else None
