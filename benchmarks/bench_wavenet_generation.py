"""WaveNet generation on the CPU: the incremental path against recomputing the receptive field; prints ratios.

``WaveNet.generate`` keeps a queue of past inputs per layer (Paine et al. 2016, "Fast Wavenet
Generation Algorithm"), so a sample costs one step per layer; ``generate_naive`` runs ``forward``
over the last receptive field for every sample, the way a model without a cache must. This script
times both, in samples per second, for the paper's layout (dilations 1..512, the widths of
``wavenet``) with 1 stack (receptive field 1,024 samples) and 4 stacks (4,093), batch 1. The naive
path is timed in its steady state: seeded with a full receptive field, so every step is a full
window.

Then the memory of the fast path against the number of samples generated: each length runs in a
fresh process, which reports its peak resident memory (what torch allocates is not seen by
tracemalloc) and the peak of Python's own allocations (tracemalloc). Flat means: the queues hold
each layer's history, not the signal's; the only thing that grows is the result (8 bytes a sample).

    python benchmarks/bench_wavenet_generation.py
    python benchmarks/bench_wavenet_generation.py --threads 1 --fast-samples 4000 --lengths 1000 8000 32000
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc

import torch

from cnnzoo.models.wavenet import WaveNet

LAYOUTS = {"1 stack": dict(stacks=1), "4 stacks": dict(stacks=4)}  # the rest: the paper's layout, `wavenet`


def build(layout: str) -> WaveNet:
    torch.manual_seed(0)
    return WaveNet(**LAYOUTS[layout]).eval()


def samples_per_s(generate, n: int) -> float:
    generate(2)  # warm-up: first calls pick kernels and fill caches
    start = time.perf_counter()
    generate(n)
    return n / (time.perf_counter() - start)


def speed(layout: str, fast_samples: int, naive_samples: int) -> dict:
    model = build(layout)
    seed_signal = model.example_input(model.receptive_field)  # a full window: the naive path's steady state
    fast = samples_per_s(lambda n: model.generate(n, seed_signal=seed_signal), fast_samples)
    naive = samples_per_s(lambda n: model.generate_naive(n, seed_signal=seed_signal), naive_samples)
    return {"layout": layout, "receptive_field": model.receptive_field, "layers": len(model.blocks),
            "params": sum(p.numel() for p in model.parameters()), "fast": fast, "naive": naive}


def child_memory(layout: str, n: int) -> dict:
    """Run in a fresh process: peak RSS and peak traced Python memory while generating ``n`` samples."""
    model = build(layout)
    model.generate(2)
    tracemalloc.start()
    out = model.generate(n)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return {"samples": n, "peak_rss_mb": rss_kb / 1024, "traced_peak_kb": traced_peak / 1024,
            "result_kb": out.numel() * out.element_size() / 1024}


def memory(layout: str, lengths: list[int], threads: int) -> list[dict]:
    rows = []
    for n in lengths:
        cmd = [sys.executable, __file__, "--child-memory", layout, str(n), "--threads", str(threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def state_kb(layout: str) -> float:
    """What the queues hold by construction: every layer's (k - 1) * dilation past inputs, float32."""
    model = build(layout)
    entries = sum(block.conv.history for block in model.blocks)
    return entries * model.config.residual_channels * 4 / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--fast-samples", type=int, default=2000, help="samples timed on the fast path")
    parser.add_argument("--naive-samples", type=int, default=10, help="samples timed on the naive path")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 8000], help="lengths for the memory check")
    parser.add_argument("--memory-layout", default="4 stacks", choices=list(LAYOUTS))
    parser.add_argument("--child-memory", nargs=2, metavar=("LAYOUT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child_memory:
        print(json.dumps(child_memory(args.child_memory[0], int(args.child_memory[1]))))
        return 0

    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}; batch 1; "
          f"paper layout (residual 32, gate 32, skip 512, kernel 2)")
    print(f"{'layout':10} {'receptive field':>15} {'layers':>6} {'params':>9} {'fast samples/s':>15} "
          f"{'naive samples/s':>16} {'fast / naive':>12}")
    for layout in LAYOUTS:
        row = speed(layout, args.fast_samples, args.naive_samples)
        print(f"{row['layout']:10} {row['receptive_field']:>15,} {row['layers']:>6} {row['params']:>9,} "
              f"{row['fast']:>15,.0f} {row['naive']:>16,.2f} {row['fast'] / row['naive']:>11,.0f}x")

    layout = args.memory_layout
    print(f"\nfast path memory, {layout} (queues hold {state_kb(layout):,.0f} KB by construction), one process each:")
    print(f"{'samples':>8} {'peak RSS MB':>12} {'peak Python KB (tracemalloc)':>29} {'result KB':>10}")
    rows = memory(layout, args.lengths, args.threads)
    for row in rows:
        print(f"{row['samples']:>8,} {row['peak_rss_mb']:>12,.1f} {row['traced_peak_kb']:>29,.1f} "
              f"{row['result_kb']:>10,.1f}")
    first, last = rows[0], rows[-1]
    print(f"from {first['samples']:,} to {last['samples']:,} samples: peak RSS "
          f"{last['peak_rss_mb'] - first['peak_rss_mb']:+.1f} MB, Python peak "
          f"{last['traced_peak_kb'] - first['traced_peak_kb']:+.1f} KB, result "
          f"{last['result_kb'] - first['result_kb']:+.1f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
