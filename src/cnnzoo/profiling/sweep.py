"""Cost tables over a model's knobs, as Markdown, CSV and a plot.

- :func:`sweep`: the MobileNet paper's tables (Howard et al. 2017, tables 6 and 7) for any model with
  a width multiplier: parameters and multiply-adds for every (width, resolution) cell, optionally
  latency; plotted as MACs against parameters.
- :func:`depth_sweep`: a dilated sequence model (WaveNet) over its depth: receptive field against
  parameters. Each layer doubles the dilation, so the receptive field grows exponentially with the
  layers while the parameters grow linearly: "a wide receptive field per parameter" (the study
  notes' quiz answer on WaveNet), shown as a table and as a plot with a logarithmic receptive-field axis.
"""
from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

from cnnzoo.display import new_figure
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
    fig = new_figure(6.4, 4.8)  # outside pyplot: a notebook's backend is left alone
    ax = fig.subplots()
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


# ----------------------------------------------------------------------------- depth (WaveNet)

DEPTH_LENGTH = 64  # samples fed to count a depth cell's multiply-adds (every step costs the same)


@dataclass
class DepthCell:
    layers_per_stack: int
    stacks: int
    layers: int                            # layers_per_stack x stacks
    receptive_field: int                   # samples one output sees
    receptive_field_s: Optional[float]     # at the model's sample rate (None for a series model)
    params: int
    macs_per_sample: int                   # multiply-adds per output step

    def to_dict(self) -> dict:
        return asdict(self)


def depth_sweep(name: str, layers_per_stack: Sequence[int] = (2, 4, 6, 8, 10), stacks: Optional[Sequence[int]] = None,
                **overrides) -> list[DepthCell]:
    """One cell per (layers per stack, stacks): receptive field, parameters and multiply-adds per
    sample, counted by :func:`summary` on the meta device (no weights are made). ``stacks`` None:
    the model's own."""
    info = get_model_info(name)
    if "layers_per_stack" not in info.arguments:
        raise UserError(f"model {name!r} has no dilation stack to deepen (layers_per_stack); a depth sweep is for "
                        f"dilated sequence models such as wavenet")
    stacks = list(stacks) if stacks else [overrides.pop("stacks", None) or info.defaults["stacks"]]
    if not layers_per_stack or min(layers_per_stack) < 1 or min(stacks) < 1:
        raise UserError(f"--layers-per-stack and --stacks need positive integers, got {list(layers_per_stack)} "
                        f"and {stacks}")
    cells = []
    for n_stacks in stacks:
        for layers in layers_per_stack:
            counted = summary(name, (1, DEPTH_LENGTH), layers_per_stack=layers, stacks=n_stacks, **overrides)
            field, per_sample, rate = counted.receptive_field, counted.macs_per_sample, counted.sample_rate
            if field is None or per_sample is None:
                raise UserError(f"model {name!r} has a dilation stack but no receptive_field attribute; a depth "
                                "sweep reports the receptive field of each depth, so the model must give it")
            cells.append(DepthCell(layers, n_stacks, layers * n_stacks, field, field / rate if rate else None,
                                   counted.total_params, per_sample))
    return cells


def depth_to_markdown(cells: Sequence[DepthCell], name: str = "") -> str:
    """One row per depth, with what each layer added: the receptive field multiplies, the parameters add."""
    timed = any(c.receptive_field_s is not None for c in cells)
    head = (["layers per stack", "stacks", "layers", "receptive field (samples)"] + (["receptive field (ms)"] if timed
            else []) + ["params", "params added per layer", "MACs per sample"])
    rows: list[list[str]] = []
    previous: dict[int, DepthCell] = {}  # stacks -> the last row with that many
    for c in cells:
        row = [str(c.layers_per_stack), str(c.stacks), str(c.layers), f"{c.receptive_field:,}"]
        if timed:
            row.append(MISSING if c.receptive_field_s is None else f"{c.receptive_field_s * 1e3:.1f}")
        before = previous.get(c.stacks)  # the row above with as many stacks: what the extra layers cost
        added = (MISSING if before is None or before.layers == c.layers
                 else f"{(c.params - before.params) / (c.layers - before.layers):,.0f}")
        row += [f"{c.params:,}", added, f"{c.macs_per_sample:,}"]
        rows.append(row)
        previous[c.stacks] = c
    title = [f"### {name}: receptive field against parameters, by depth"] if name else []
    note = ("Each layer doubles its dilation: the receptive field grows exponentially with depth, the parameters "
            "linearly (MACs = multiply-adds per output sample).")
    return "\n".join([*title, table(rows, head, "r" * len(head), markdown=True, pad=False), "", note])


def depth_to_csv(cells: Sequence[DepthCell]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(DepthCell.__dataclass_fields__), lineterminator="\n")
    writer.writeheader()
    for c in cells:
        writer.writerow(c.to_dict())
    return buf.getvalue()


def plot_depth_sweep(cells: Sequence[DepthCell], path: str, name: str = "") -> str:
    """Left: receptive field (log axis) and parameters against layers; right: receptive field against
    parameters. Written to ``path`` (PNG) atomically."""
    fig = new_figure(11, 4.5)
    by_depth, by_params = fig.subplots(1, 2)
    params_axis = by_depth.twinx()
    for n_stacks in sorted({c.stacks for c in cells}):
        row = sorted((c for c in cells if c.stacks == n_stacks), key=lambda c: c.layers)
        label = f"{n_stacks} stack{'s' if n_stacks > 1 else ''}"
        layers = [c.layers for c in row]
        (line,) = by_depth.plot(layers, [c.receptive_field for c in row], "o-", label=f"receptive field, {label}")
        params_axis.plot(layers, [c.params / 1e3 for c in row], "s--", color=line.get_color(), alpha=0.5,
                         label=f"parameters, {label}")
        by_params.plot([c.params / 1e3 for c in row], [c.receptive_field for c in row], "o-", label=label)
        for c in row:
            by_params.annotate(f"{c.layers} layers", (c.params / 1e3, c.receptive_field), fontsize=7,
                               xytext=(3, -9), textcoords="offset points")
    by_depth.set_yscale("log", base=2)
    by_depth.set_xlabel("layers")
    by_depth.set_ylabel("receptive field (samples, log scale)")
    params_axis.set_ylabel("parameters (thousands)")
    by_depth.grid(alpha=0.3)
    lines = by_depth.get_legend_handles_labels()
    more = params_axis.get_legend_handles_labels()
    by_depth.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper left")
    by_depth.set_title("exponential in depth (left axis), linear (right)", fontsize=9)
    by_params.set_yscale("log", base=2)
    by_params.set_xlabel("parameters (thousands)")
    by_params.set_ylabel("receptive field (samples, log scale)")
    by_params.grid(alpha=0.3)
    by_params.legend(fontsize=7)
    by_params.set_title("receptive field per parameter", fontsize=9)
    fig.suptitle(f"{name} depth sweep".strip())
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    return path
