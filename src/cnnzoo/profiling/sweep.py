"""The MobileNet paper's cost tables (Howard et al. 2017, tables 6 and 7) for any model with a
width multiplier: parameters and multiply-adds for every (width, resolution) cell, optionally
latency, as Markdown, CSV and a MACs-against-parameters plot."""
from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

from cnnzoo.errors import UserError
from cnnzoo.factory import create_model
from cnnzoo.files import save_figure
from cnnzoo.profiling.latency import measure_latency
from cnnzoo.profiling.summary import summary
from cnnzoo.registry import get_model_info
from cnnzoo.text import MISSING, table


@dataclass
class SweepCell:
    width_mult: float
    resolution: int
    params: int
    macs: int                          # multiply-adds of one image
    latency_ms: Optional[float] = None  # median per image at batch 1, when measured

    def to_dict(self) -> dict:
        return asdict(self)


def sweep(name: str, width_mults: Sequence[float] = (1.0, 0.75, 0.5, 0.25),
          resolutions: Sequence[int] = (224, 192, 160, 128), *, latency: bool = False,
          repeats: int = 5, warmup: int = 1, threads: Optional[int] = None, **overrides) -> list[SweepCell]:
    """One cell per (width multiplier, square input resolution): params and MACs, and latency if asked."""
    info = get_model_info(name)
    if "width_mult" not in info.arguments:
        raise UserError(f"model {name!r} has no width multiplier (width_mult); its arguments: "
                        f"{', '.join(info.arguments)}")
    if not width_mults or min(width_mults) <= 0:
        raise UserError(f"--width-mult needs positive numbers, got {list(width_mults)}")
    if not resolutions or min(resolutions) < 1:
        raise UserError(f"--resolution needs positive integers, got {list(resolutions)}")
    channels = overrides.get("in_chans") or info.input_size[0]
    cells = []
    for width in width_mults:
        for res in resolutions:
            counted = summary(name, (channels, res, res), width_mult=width, **overrides)
            cell = SweepCell(width, res, counted.total_params, counted.macs)
            if latency:
                model = create_model(name, width_mult=width, **overrides)
                lat = measure_latency(model, (channels, res, res), 1, repeats=repeats, warmup=warmup,
                                      threads=threads)
                cell.latency_ms = lat.median_s * 1e3
            cells.append(cell)
    return cells


def to_markdown(cells: Sequence[SweepCell], name: str = "") -> str:
    """A long-form Markdown table, one row per cell (the paper's tables 6 and 7 in one)."""
    timed = any(c.latency_ms is not None for c in cells)
    head = ["width_mult", "resolution", "Million MACs", "Million params"] + (["latency ms (batch 1)"] if timed else [])
    rows = []
    for c in cells:
        row = [f"{c.width_mult:g}", str(c.resolution), f"{c.macs / 1e6:.0f}", f"{c.params / 1e6:.2f}"]
        if timed:
            row.append(MISSING if c.latency_ms is None else f"{c.latency_ms:.2f}")
        rows.append(row)
    title = [f"### {name}: multiply-adds (MACs) and parameters"] if name else []
    return "\n".join(title + [table(rows, head, "r" * len(head), markdown=True, pad=False)])


def to_csv(cells: Sequence[SweepCell]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SweepCell.__dataclass_fields__), lineterminator="\n")
    writer.writeheader()
    for c in cells:
        writer.writerow(c.to_dict())
    return buf.getvalue()


def plot_sweep(cells: Sequence[SweepCell], path: str, name: str = "") -> str:
    """MACs against parameters, one labelled point per cell; written to ``path`` (PNG) atomically."""
    # measured: matplotlib.pyplot costs about 0.2 s to import; only paid when a plot is drawn
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for width in sorted({c.width_mult for c in cells}, reverse=True):
        row = [c for c in cells if c.width_mult == width]
        ax.plot([c.params / 1e6 for c in row], [c.macs / 1e6 for c in row], "o-", label=f"width {width:g}")
        for c in row:
            ax.annotate(str(c.resolution), (c.params / 1e6, c.macs / 1e6), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("multiply-adds per image (millions of MACs)")
    ax.set_title(f"{name} width x resolution sweep (labels: input px)".strip())
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path, dpi=120)
    return path
