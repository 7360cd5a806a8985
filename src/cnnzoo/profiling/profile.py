"""``cnnzoo profile``: latency, throughput and hardware utilisation of several models side by side."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch

from cnnzoo.errors import UserError
from cnnzoo.factory import create_model
from cnnzoo.profiling.latency import measure_latency, measure_matmul_peak, resolve_device
from cnnzoo.profiling.summary import summary
from cnnzoo.registry import get_model_info
from cnnzoo.text import MISSING, format_percent, table

PEAK_MATMUL_SIZE = 2048


def default_devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def profile_models(names: Sequence[str], *, batch_sizes: Sequence[int] = (1,), input_size=None,
                   devices: Optional[Sequence[str]] = None, threads: Optional[int] = None,
                   channels_last: bool = False, repeats: int = 10, warmup: int = 2,
                   **overrides) -> dict:
    """Measure each model at each batch size on each device; returns a JSON-ready dict.

    ``achieved_gflops`` = 2 x forward MACs x batch / median seconds (FLOPs, not MACs), and
    ``fraction_of_peak`` divides it by the GFLOP/s of a 2048x2048 fp32 matrix multiply measured
    on the same device in the same run.
    """
    if not batch_sizes or min(batch_sizes) < 1:
        raise UserError(f"--batch-size needs positive integers, got {list(batch_sizes)}")
    for name in names:
        get_model_info(name)  # fail on a typo before spending time on measurements
    devices = [str(resolve_device(d)) for d in (devices or default_devices())]
    peaks = {d: measure_matmul_peak(d, PEAK_MATMUL_SIZE, threads=threads) for d in devices}
    results = []
    for name in names:
        counted = summary(name, input_size, **overrides)  # on the meta device: shapes only
        size = counted.input_size
        for device in devices:
            model = create_model(name, **overrides)
            for batch in batch_sizes:
                lat = measure_latency(model, size, batch, repeats=repeats, warmup=warmup, device=device,
                                      channels_last=channels_last, threads=threads)
                gflops = 2 * counted.macs * batch / lat.median_s / 1e9
                results.append({
                    "model": name, "device": device, "input_size": list(size), "batch_size": batch,
                    "params": counted.total_params, "macs_per_image": counted.macs,
                    **{k: v for k, v in lat.to_dict().items() if k not in ("batch_size", "device")},
                    "achieved_gflops": gflops, "fraction_of_peak": gflops / peaks[device],
                })
            del model
    return {"matmul_peak_gflops": peaks, "cpu_count": os.cpu_count(), "load_average_1min": _load_average(),
            "matmul_peak_size": PEAK_MATMUL_SIZE,
            "units": "latency in seconds; macs = multiply-adds; gflops = 1e9 FLOPs (2 per MAC) per second",
            "results": results}


def _load_average() -> Optional[float]:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no load average
        return None


def format_profile_table(report: dict) -> str:
    """The human-readable form of :func:`profile_models`' result."""
    lines = [f"matrix-multiply peak ({report['matmul_peak_size']}^2 fp32): "
             + ", ".join(f"{d} {g:.1f} GFLOP/s" for d, g in report["matmul_peak_gflops"].items())]
    header = ("model", "device", "input", "batch", "ms/batch", "IQR ms", "ms/image", "images/s",
              "GMACs/img", "GFLOP/s", "% peak", "peak MB")
    body = []
    for r in report["results"]:
        mem = r["peak_memory_bytes"]
        body.append((r["model"], r["device"], "x".join(map(str, r["input_size"])), r["batch_size"],
                     f"{r['median_s'] * 1e3:.2f}", f"{r['spread_s'] * 1e3:.2f}", f"{r['per_image_s'] * 1e3:.2f}",
                     f"{r['images_per_s']:.1f}", f"{r['macs_per_image'] / 1e9:.3f}",
                     f"{r['achieved_gflops']:.1f}", format_percent(r["fraction_of_peak"], 0),
                     MISSING if mem is None else f"{mem / 1e6:.1f}"))
    lines.append(table(body, header, align="lll" + "r" * 9))
    lines.append("median over repeats after warm-up; IQR = inter-quartile range; "
                 "GFLOP/s counts 2 FLOPs per multiply-add; peak MB = tensor memory of one forward pass")
    load, cpus = report.get("load_average_1min"), report.get("cpu_count")
    if load is not None and cpus and load > cpus:
        # Multi-threaded kernels wait for their slowest thread; with the cores oversubscribed,
        # timings can be 10-20x off. One thread per process is then the fairer comparison.
        lines.append(f"warning: load average {load:.1f} exceeds the {cpus} CPU cores: other processes "
                     "compete; timings are unreliable (try --threads 1)")
    return "\n".join(lines)
