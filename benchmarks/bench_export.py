"""Where a model should run on this CPU: eager PyTorch, eager with batch norm folded and channels-last,
onnxruntime fp32 and onnxruntime int8, side by side in one run; file sizes; int8's accuracy cost.

Latency (random weights at ``--image-size``, int8 calibrated on random inputs: the speed of int8
does not depend on what it was calibrated on) is the median of ``--repeats`` passes after warm-up,
with every runtime on the same ``--threads``. The runtimes are timed round-robin, ``--rounds``
times, keeping each one's best median, so that a burst of load from another process on a shared
machine lands on all of them rather than on whichever happened to run then.

With ``--checkpoint`` and ``--calibration-data`` it also exports that checkpoint to int8 as
``cnnzoo export`` does and prints accuracy before and after on the data's validation split.

    python benchmarks/bench_export.py
    python benchmarks/bench_export.py --threads 1 --batch-sizes 1,32 \\
        --checkpoint runs/mnv2/best.pt --calibration-data flowers/
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from cnnzoo.export import RUNTIMES, cpu_info, export_model, prepare_runtime
from cnnzoo.files import atomic_write_text

MODELS = ("mobilenet_v1", "mobilenet_v2", "resnet18")


def time_runtimes(model: str, image_size: int, batch_sizes, threads: int, repeats: int, rounds: int) -> dict:
    """{runtime: {"ms": {batch: best median ms}, "file_bytes": ...}} for every runtime of ``RUNTIMES``."""
    torch.manual_seed(0)
    prepared = {rt: prepare_runtime(model, rt, image_size=image_size, threads=threads) for rt in RUNTIMES}
    best = {rt: {b: float("inf") for b in batch_sizes} for rt in RUNTIMES}
    for _ in range(rounds):
        for batch in batch_sizes:
            for rt, runtime in prepared.items():
                ms = 1e3 * runtime.latency(batch, repeats=repeats, warmup=3).median_s
                best[rt][batch] = min(best[rt][batch], ms)
    return {rt: {"ms": best[rt], "file_bytes": prepared[rt].file_bytes} for rt in RUNTIMES}


def print_latency_table(results: dict, batch_sizes) -> None:
    header = f"{'model':<13} {'runtime':<13}" + "".join(f" {'batch ' + str(b) + ' ms':>13} {'x eager':>7}"
                                                         for b in batch_sizes) + f" {'file MB':>8}"
    print(header)
    for model, by_runtime in results.items():
        eager = by_runtime["torch"]["ms"]
        for rt, row in by_runtime.items():
            cells = "".join(f" {row['ms'][b]:>13.2f} {eager[b] / row['ms'][b]:>6.2f}x" for b in batch_sizes)
            size = f"{row['file_bytes'] / 1e6:>8.2f}" if row["file_bytes"] else f"{'':>8}"
            print(f"{model:<13} {rt:<13}{cells} {size}")
        fp32, int8 = by_runtime["onnxruntime"]["file_bytes"], by_runtime["int8"]["file_bytes"]
        print(f"{'':<13} int8 file = {int8 / fp32:.0%} of fp32; best at batch 1: "
              f"{max(by_runtime, key=lambda rt: eager[batch_sizes[0]] / by_runtime[rt]['ms'][batch_sizes[0]])}")


def int8_accuracy(checkpoint: str, data: str, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        report = export_model(checkpoint, "onnx", quantize="int8", calibration=data, dynamic_batch=True,
                              out=Path(tmp) / "model.int8.onnx", threads=threads, repeats=20)
    return report.to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--checkpoint", help="a trained checkpoint for the int8 accuracy figure")
    parser.add_argument("--calibration-data", help="its data (a folder): calibration and validation images")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    print(f"CPU: {cpu_info()}")
    print(f"torch {torch.__version__}, {args.threads} threads, {args.image_size} px, random weights, "
          f"best of {args.rounds} rounds of median-of-{args.repeats}\n")
    results = {}
    for model in args.models.split(","):
        results[model] = time_runtimes(model, args.image_size, batch_sizes, args.threads, args.repeats, args.rounds)
    print_latency_table(results, batch_sizes)

    out = {"cpu": cpu_info().to_dict(), "threads": args.threads, "latency": results}
    if args.checkpoint:
        report = int8_accuracy(args.checkpoint, args.calibration_data, args.threads)
        acc = report["accuracy"]
        print(f"\n{report['source']}, int8 calibrated on {report['calibration']}")
        print(f"  accuracy fp32 {acc['fp32']:.4f} -> int8 {acc['int8']:.4f} "
              f"({100 * (acc['int8'] - acc['fp32']):+.1f} points) on {acc['images']} {acc['data']}; "
              f"top-1 agreement {report['verification']['top1_agreement']:.1%}")
        print(f"  files: fp32 ONNX {report['fp32_file_bytes'] / 1e6:.2f} MB, int8 {report['file_bytes'] / 1e6:.2f} MB "
              f"({report['file_bytes'] / report['fp32_file_bytes']:.0%})")
        for row in report["latency"]:
            print(f"  {row['runtime']:<42} batch {row['batch_size']:>3}: {1e3 * row['median_s']:8.2f} ms")
        out["int8_accuracy"] = report
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
