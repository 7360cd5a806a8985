"""List the registered models with their family, default input size, published weights and paper."""
from __future__ import annotations

import argparse
import json
from typing import Any, Optional

from cnnzoo.pretrained import KERAS_MODES, has_published_weights
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
    shown = {source for r in rows for source in (r["published_weights"] or "").split(", ") if source}
    notes = [(TORCHVISION, "ImageNet weights published by torchvision, used with --weights torchvision"),
             (LITE, "ImageNet weights from the lite-weights packages, used with --weights imagenet"),
             (KERAS, "keras.applications' ImageNet file, used with --weights keras (the model is then "
                     "built in Keras' layout) or a .h5 file")]
    explained = [f"{source}: {note}" for source, note in notes if source in shown]
    if explained:
        print("\n" + "\n".join(explained))
    return 0


TORCHVISION, LITE, KERAS = "torchvision", "imagenet (lite-weights)", "keras"


def _published(name: str) -> Optional[str]:
    """Where ImageNet weights for ``name`` come from, comma-separated; None where none are published."""
    sources = [LITE] if has_lite_weights(name) else [TORCHVISION] if has_published_weights(name) else []
    if name in KERAS_MODES:
        sources.append(KERAS)
    return ", ".join(sources) or None
