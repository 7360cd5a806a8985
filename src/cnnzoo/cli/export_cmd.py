"""Export a checkpoint (or a model by name, with random weights) to ONNX or torch.export's .pt2,
optionally as int8 for the CPU, prove it computes what the eager model does, and time it.

examples:
  cnnzoo export runs/mnv2/best.pt                                  # -> runs/mnv2/best.onnx
  cnnzoo export runs/mnv2/best.pt --quantize int8 --calibration-data flowers/ --dynamic-batch
  cnnzoo export resnet18 --format pt2 --image-size 160             # random weights, for latency
  cnnzoo export best.pt --dynamic-batch --latency-batch 16 --threads 1 --json

Batch norm is folded into the convolutions first. The exported file is loaded back and run against
the eager model before it is written: fp32 must match to float rounding, int8 must pick the same
class on at least 90% of the calibration data's validation images (--min-agreement). A failed
check writes nothing and exits with status 1. The file's metadata carries the model's name and
arguments, and for a checkpoint its class names and preprocessing.
"""
from __future__ import annotations

import argparse
import json
import sys

from cnnzoo.cli import EXIT_FAILED, EXIT_OK
from cnnzoo.cli.common import add_model_arguments, model_overrides
from cnnzoo.export.formats import FORMATS, QUANTIZATIONS

HELP = "export to ONNX or .pt2 (optionally int8), verified against eager PyTorch and timed"
TAKES_MODEL_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="CKPT_OR_NAME",
                        help="a checkpoint written by `cnnzoo train`, or a model name (random weights)")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (default) or pt2 (torch.export)")
    parser.add_argument("--weights", help="with a model name: start from these weights ('torchvision', alias "
                                          "'imagenet'; 'keras'; or a file, Keras' .h5 too) instead of random ones")
    parser.add_argument("--out", help="the file to write (default: beside the checkpoint, or <model>.onnx here)")
    parser.add_argument("--opset", type=int, help="ONNX operator set, 18 or later (default: torch's)")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="accept any batch size (default: a fixed batch of 1)")
    parser.add_argument("--image-size", type=int,
                        help="height and width to export at (default: the checkpoint's, or the model's 224)")
    g = parser.add_argument_group("int8")
    g.add_argument("--quantize", choices=QUANTIZATIONS,
                   help="int8: onnxruntime static quantisation (QDQ, per-channel weights); ONNX only")
    g.add_argument("--calibration-data", metavar="SRC",
                   help="images to calibrate on (a folder or a built-in source); accuracy before and after "
                        "is reported on its validation split")
    g.add_argument("--calibration-images", type=int, default=128,
                   help="training images used for calibration (default 128)")
    g.add_argument("--min-agreement", type=_fraction, default=0.9, metavar="FRACTION",
                   help="int8 is written only if it picks the fp32 model's class on at least this share of the "
                        "validation images (default 0.9)")
    t = parser.add_argument_group("timing")
    t.add_argument("--threads", type=int, help="CPU threads for every runtime (default: torch's)")
    t.add_argument("--latency-batch", type=int, default=32,
                   help="the larger batch timed besides 1, with --dynamic-batch (default 32)")
    t.add_argument("--repeat", type=int, default=10, help="timed passes per measurement (default 10)")
    t.add_argument("--warmup", type=int, default=2, help="untimed passes first (default 2)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the exporters bring onnx and onnxruntime, costly imports that every
    # other subcommand would pay for, since the CLI loads them all.
    from cnnzoo.export.pipeline import export_model
    from cnnzoo.export.verify import ExportError

    try:
        report = export_model(args.model, args.format, out=args.out, opset=args.opset,
                              dynamic_batch=args.dynamic_batch, image_size=args.image_size,
                              quantize=args.quantize, calibration=args.calibration_data,
                              calibration_images=args.calibration_images, min_agreement=args.min_agreement,
                              threads=args.threads,
                              latency_batch=args.latency_batch, repeats=args.repeat, warmup=args.warmup,
                              **model_overrides(args), **({"weights": args.weights} if args.weights else {}))
    except ExportError as err:
        print(f"cnnzoo export: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return EXIT_OK


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, e.g. 0.8; got {text!r}")
    return value


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def format_report(report) -> str:
    """What was written, how it was checked, how big and how fast it is."""
    kind = f"ONNX opset {report.opset}" if report.format == "onnx" else "torch.export .pt2"
    if report.quantize:
        kind += ", int8 (QDQ, per-channel weights)"
    batch = "N" if report.dynamic_batch else "1"
    lines = [f"{report.source} -> {report.path}",
             f"  format     {kind}; images [{batch}, {', '.join(map(str, report.input_size))}] -> logits; "
             f"batch norms folded {report.batch_norms_folded}, left {report.batch_norms_left}"]
    if report.calibration:
        lines.append(f"  calibrated on {report.calibration}")
    lines.append(f"  verified   {report.verification.summary()}")
    if report.accuracy:
        lines.append(f"  accuracy   {report.accuracy.summary()}")
    size = f"  size       {_mb(report.file_bytes)}"
    if report.fp32_file_bytes:
        size += f" = {report.file_bytes / report.fp32_file_bytes:.1%} of the fp32 ONNX ({_mb(report.fp32_file_bytes)})"
    size += f"; fp32 weights {_mb(report.weight_bytes)}"
    if report.checkpoint_bytes:
        size += f"; checkpoint file {_mb(report.checkpoint_bytes)}"
    lines.append(size)
    lines.append(f"  latency    {_cpu(report.cpu)}; "
                 f"{report.threads} thread{'s' if report.threads != 1 else ''}; median ms per batch, "
                 "speed-up over PyTorch eager")
    lines.extend("             " + row for row in _latency_table(report.latency))
    lines.extend(f"  note       {note}" for note in report.notes)
    return "\n".join(lines)


def _cpu(cpu: dict) -> str:
    ext = ", ".join(cpu["extensions"]) or "no vector extensions reported"
    dot = "" if cpu["int8_dot_product"] else " (no int8 dot-product instructions: expect little from int8)"
    return f"{cpu['model']}, {cpu['cores']} logical cores; {ext}{dot}"


def _latency_table(rows: list[dict]) -> list[str]:
    batches = sorted({r["batch_size"] for r in rows})
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    by = {(r["runtime"], r["batch_size"]): r["median_s"] for r in rows}
    eager = {b: by.get((runtimes[0], b)) for b in batches}
    width = max(len(r) for r in runtimes)
    lines = [f"{'runtime':<{width}}" + "".join(f"  {'batch ' + str(b):>17}" for b in batches)]
    for runtime in runtimes:
        cells = []
        for b in batches:
            t = by.get((runtime, b))
            cells.append(f"  {t * 1e3:>9.2f} {eager[b] / t:>6.2f}x" if t else f"  {'-':>17}")
        lines.append(f"{runtime:<{width}}" + "".join(cells))
    return lines
