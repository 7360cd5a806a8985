"""Where a model should run on this CPU: eager PyTorch, eager with batch norm folded and channels-last,
onnxruntime fp32 and onnxruntime int8, side by side in one run; file sizes; int8's accuracy cost.

Latency (random weights at ``--image-size``, int8 calibrated on random inputs: the speed of int8
does not depend on what it was calibrated on) is the median of ``--repeats`` passes after warm-up,
with every runtime on the same ``--threads``. The runtimes are timed round-robin, ``--rounds``
times, keeping each one's best median, so that a burst of load from another process on a shared
machine lands on all of them rather than on whichever happened to run then.

int8's accuracy cost: with ``--checkpoint`` (one or more) and ``--calibration-data``, each
checkpoint is exported to int8 as ``cnnzoo export`` does and scored before and after on the data's
validation split; with ``--train-seeds N`` and ``--calibration-data``, the benchmark first trains N
models itself (``--accuracy-model``, ``--width-mult``, ``--epochs``; seeds 0..N-1, so each has its
own validation split). One 60-image split moves 1.7 points per changed prediction, and int8 changes
a few low-margin predictions both ways, so the figure to read is the pooled one over every model.

    python benchmarks/bench_export.py
    python benchmarks/bench_export.py --threads 1 --batch-sizes 1,32 \\
        --checkpoint runs/mnv2/best.pt --calibration-data flowers/
    python benchmarks/bench_export.py --models none --calibration-data flowers/ --train-seeds 5
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from cnnzoo import train
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


def int8_accuracy(checkpoint, data: str, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        report = export_model(checkpoint, "onnx", quantize="int8", calibration=data, dynamic_batch=True,
                              out=Path(tmp) / "model.int8.onnx", threads=threads, repeats=20)
    return report.to_dict()


def train_checkpoints(model: str, width_mult: float, data: str, epochs: int, seeds: int, threads: int,
                      folder: Path) -> list[Path]:
    paths = []
    for seed in range(seeds):
        out = folder / f"{model}_seed{seed}"
        result = train(model=model, model_args={"width_mult": width_mult}, data=data, epochs=epochs, seed=seed,
                       out_dir=str(out), progress=False, threads=threads)
        print(f"trained {model} x{width_mult} seed {seed}: best validation accuracy {result.best_val_acc:.4f}",
              flush=True)
        paths.append(out / "best.pt")
    return paths


def print_int8_accuracy(reports: list[dict]) -> None:
    print(f"\n{'checkpoint':<40} {'images':>6} {'fp32':>7} {'int8':>7} {'points':>7} {'agree':>6} "
          f"{'now wrong':>9} {'now right':>9} {'int8 file':>9}")
    for r in reports:
        acc = r["accuracy"]
        name = "/".join(Path(r["source"].split(" from ")[-1]).parts[-2:])  # run folder/best.pt
        print(f"{name[-40:]:<40} {acc['images']:>6} {acc['fp32']:>7.4f} {acc['int8']:>7.4f} "
              f"{100 * (acc['int8'] - acc['fp32']):>+7.1f} {r['verification']['top1_agreement']:>6.1%} "
              f"{acc['now_wrong']:>9} {acc['now_right']:>9} {r['file_bytes'] / r['fp32_file_bytes']:>9.1%}")
    images = sum(r["accuracy"]["images"] for r in reports)
    fp32 = sum(r["accuracy"]["fp32"] * r["accuracy"]["images"] for r in reports)
    int8 = sum(r["accuracy"]["int8"] * r["accuracy"]["images"] for r in reports)
    wrong = sum(r["accuracy"]["now_wrong"] for r in reports)
    right = sum(r["accuracy"]["now_right"] for r in reports)
    print(f"{'pooled':<40} {images:>6} {fp32 / images:>7.4f} {int8 / images:>7.4f} "
          f"{100 * (int8 - fp32) / images:>+7.1f} {'':>6} {wrong:>9} {right:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--checkpoint", nargs="+", default=[], help="trained checkpoints for the int8 accuracy figure")
    parser.add_argument("--calibration-data", help="their data (a folder): calibration and validation images")
    parser.add_argument("--train-seeds", type=int, default=0,
                        help="train this many models on --calibration-data first (seeds 0..N-1)")
    parser.add_argument("--accuracy-model", default="mobilenet_v2")
    parser.add_argument("--width-mult", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    models = [m for m in args.models.split(",") if m and m != "none"]
    if (args.checkpoint or args.train_seeds) and not args.calibration_data:
        parser.error("--checkpoint and --train-seeds need --calibration-data")

    print(f"CPU: {cpu_info()}")
    out = {"cpu": cpu_info().to_dict(), "threads": args.threads}
    if models:
        print(f"torch {torch.__version__}, {args.threads} threads, {args.image_size} px, random weights, "
              f"best of {args.rounds} rounds of median-of-{args.repeats}\n")
        results = {}
        for model in models:
            results[model] = time_runtimes(model, args.image_size, batch_sizes, args.threads, args.repeats,
                                           args.rounds)
        print_latency_table(results, batch_sizes)
        out["latency"] = results

    with tempfile.TemporaryDirectory(prefix="cnnzoo-bench-") as tmp:
        checkpoints = list(args.checkpoint)
        if args.train_seeds:
            checkpoints += train_checkpoints(args.accuracy_model, args.width_mult, args.calibration_data, args.epochs,
                                             args.train_seeds, args.threads, Path(tmp))
        reports = [int8_accuracy(c, args.calibration_data, args.threads) for c in checkpoints]
    if reports:
        print(f"int8 calibrated on {reports[0]['calibration']}")
        print_int8_accuracy(reports)
        out["int8_accuracy"] = reports
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
