"""Evaluate a checkpoint on images it was not trained on: accuracy with its 95 % interval, top-5 (with
more than 5 classes), per-class precision and recall, and a confusion matrix (PNG + metrics.json).

examples:
  cnnzoo evaluate runs/resnet18-digits/best.pt               # its data's test split, else its validation split
  cnnzoo evaluate best.pt --data cifar10-folder/             # a folder with test/: scored on test/
  cnnzoo evaluate best.pt --data holdout/ --out report/      # every image of another folder

The training images are never scored: on the data the model was trained on, --split train and
--split all are refused. The output always names the split and how many images it holds.
"""
from __future__ import annotations

import argparse
import json

from cnnzoo.cli import EXIT_OK
from cnnzoo.text import table
from cnnzoo.training import evaluate
from cnnzoo.training.evaluate import SPLITS

HELP = "evaluate a checkpoint (accuracy, per-class precision/recall, confusion matrix)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .pt file written by `cnnzoo train` (best.pt or last.pt)")
    parser.add_argument("--data", help="data to evaluate on (default: the data the model was trained on)")
    parser.add_argument("--split", choices=SPLITS,
                        help="which part of the data (default: test when the data has one; else val for the "
                             "data the model was trained on, all for other data)")
    parser.add_argument("--out", help="folder for confusion_matrix.png and metrics.json "
                                      "(default: beside the checkpoint)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--tta", action="store_true",
                        help="also score with test-time augmentation (each image and its mirror, averaged); "
                             "refused for digits, whose classes a mirror image changes")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run(args: argparse.Namespace) -> int:
    result = evaluate(args.checkpoint, args.data, split=args.split, batch_size=args.batch_size,
                      out_dir=args.out, device=args.device, tta=args.tta)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return EXIT_OK
    print(format_report(result))
    return EXIT_OK


def format_report(result) -> str:
    """Accuracy lines, then one row per class (precision and recall as fractions)."""
    lines = [f"scored on the {result.describe_split()}", f"accuracy       {result.accuracy:.4f}"
             + (" (95 % interval {:.4f}-{:.4f}, Wilson)".format(*result.accuracy_interval)
                if result.accuracy_interval else "")]
    if result.tta_accuracy is not None:
        lines.append(f"with TTA       {result.tta_accuracy:.4f} (the image and its mirror, averaged)")
    if result.top5_accuracy is not None:
        lines.append(f"top-5 accuracy {result.top5_accuracy:.4f}")
    rows = [(r["class"], f"{r['precision']:.4f}", f"{r['recall']:.4f}", r["support"]) for r in result.per_class]
    lines += ["", table(rows, ("class", "precision", "recall", "support"), "lrrr")]
    lines += [f"wrote {path}" for path in result.files.values()]
    return "\n".join(lines)
