"""The comparison's plots, drawn with matplotlib's Agg backend (no display needed) as PNG bytes.

- validation accuracy against epoch, all models together;
- validation accuracy against wall-clock training time;
- best accuracy against MACs, and against latency at batch 1, with the Pareto front marked and
  each point's 95 % interval as an error bar;
- per model, training and validation loss and accuracy by epoch (every seed): over-fitting shows
  as the two accuracy curves drawing apart (drawn when the histories hold training accuracy);
- accuracy against MACs across width (alpha) and input resolution, one line per model and width
  through its resolutions (drawn when a model is compared at several widths or sizes).
"""
from __future__ import annotations

import io
import itertools
from collections import defaultdict
from typing import Optional, Sequence, Union

from cnnzoo import display
from cnnzoo.compare.analysis import done, pareto_front
from cnnzoo.compare.record import ModelRecord

# (file stem, title) of each plot, in the order the report shows them.
PLOTS = (
    ("accuracy_vs_epoch", "Validation accuracy by epoch"),
    ("accuracy_vs_time", "Validation accuracy by training time"),
    ("accuracy_vs_macs", "Accuracy against compute (MACs)"),
    ("accuracy_vs_latency", "Accuracy against latency (batch 1)"),
    ("width_and_resolution", "Accuracy against compute across width (alpha) and resolution"),
    ("train_val_curves", "Training and validation curves per model"),
)


# One style for every plot: matplotlib's own face (DejaVu Sans, the report's text face) at 10 pt,
# which at PLOT_DPI is the report's small text size (14 px); each figure is drawn at the width the
# report shows it (ROW_SIZE side by side, WIDE otherwise), so no plot is scaled and all text in
# the plots is one size.
PLOT_DPI = 100
ROW_SIZE = (5.2, 3.6)   # inches: 520 px, the report's width for plots side by side
WIDE = 7.6              # inches: 760 px, the report's width for a plot on its own
PLOT_STYLE = {"font.family": "DejaVu Sans", "font.size": 10, "legend.fontsize": 10, "axes.titlesize": 10,
              "axes.labelsize": 10, "xtick.labelsize": 10, "ytick.labelsize": 10, "figure.titlesize": 10,
              "figure.dpi": PLOT_DPI, "savefig.dpi": PLOT_DPI}


def _style():
    """PLOT_STYLE for the figures drawn inside it (matplotlib's own rc_context, not pyplot's)."""
    # imported here: matplotlib is a costly import, paid only when a plot is drawn
    import matplotlib

    return matplotlib.rc_context(PLOT_STYLE)


def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    """A figure outside pyplot (a notebook's backend is never switched) and its axes."""
    fig = display.new_figure(width, height)
    return fig, fig.subplots(rows, cols, squeeze=rows * cols == 1)


def render_plots(records: Sequence[Union[ModelRecord, dict]]) -> dict[str, bytes]:
    """``{stem: png_bytes}`` for the plots of :data:`PLOTS` the records can fill (none when no model finished)."""
    finished = done(records)
    if not finished:
        return {}
    with _style():
        return _render(finished)


def _render(finished: list[ModelRecord]) -> dict[str, bytes]:
    plots = {
        "accuracy_vs_epoch": _curves(finished, x="epoch", xlabel="epoch"),
        "accuracy_vs_time": _curves(finished, x="elapsed_s", xlabel="training time (s, wall clock)"),
        "accuracy_vs_macs": _trade_off(finished, "macs", "MACs (multiply-adds) per image, log scale"),
        "accuracy_vs_latency": _trade_off(finished, "latency_b1_ms",
                                          "latency at batch 1 (ms per image), log scale"),
    }
    if varies_width_or_resolution(finished):
        plots["width_and_resolution"] = _width_and_resolution(finished)
    if any("train_acc" in h for r in finished for h in r.history):
        plots["train_val_curves"] = _train_val_curves(finished)
    return plots


def varies_width_or_resolution(records: Sequence[ModelRecord]) -> bool:
    """Is any model compared at more than one width, or are models compared at more than one size?"""
    sizes = {r.image_size for r in records if r.image_size}
    widths = defaultdict(set)
    for r in records:
        widths[r.model].add(r.width_mult)
    return len(sizes) > 1 or any(len(w) > 1 for w in widths.values())


def _markers():
    return itertools.cycle("osD^v<>ph*")


def _curves(records: list[ModelRecord], x: str, xlabel: str) -> bytes:
    fig, ax = _figure(*ROW_SIZE)
    for record, marker in zip(records, _markers()):
        history = record.history or []
        xs = _elapsed(history) if x == "elapsed_s" else [h.get("epoch") for h in history]
        ys = [100 * h["val_acc"] for h in history]
        ax.plot(xs, ys, marker=marker, markersize=4, label=record.name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _png(fig)


def _elapsed(history: list[dict]) -> list[float]:
    """Wall-clock seconds since the start of training at the end of each epoch (evaluation included)."""
    if history and all("elapsed" in h for h in history):
        return [float(h["elapsed"]) for h in history]
    total, out = 0.0, []
    for h in history:
        total += float(h.get("epoch_time") or 0.0)
        out.append(total)
    return out


def _error_bar(r: ModelRecord, acc_pct: float) -> tuple[list[float], list[float]]:
    """Below and above ``acc_pct`` (``r``'s best validation accuracy in %) to its 95 % interval's ends."""
    interval = r.interval()
    if interval is None:
        return [0.0], [0.0]
    # at 0 % or 100 % the interval's end equals the accuracy up to rounding, which may fall below zero
    return [max(0.0, acc_pct - 100 * interval[0])], [max(0.0, 100 * interval[1] - acc_pct)]


def _trade_off(records: list[ModelRecord], cost_key: str, xlabel: str) -> bytes:
    fig, ax = _figure(*ROW_SIZE)
    # (record, cost, accuracy in %) of the records with both: a cost of 0 has no place on a log axis
    points = [(r, cost, 100 * r.best_val_acc) for r in records
              if (cost := getattr(r, cost_key)) and r.best_val_acc is not None]
    front = set(pareto_front([r for r, _, _ in points], cost_key))
    for r, cost, acc in points:
        on_front = r.name in front
        low, high = _error_bar(r, acc)
        ax.errorbar(cost, acc, yerr=[low, high], fmt="o",
                    markersize=7 if on_front else 5, capsize=3, elinewidth=1,
                    color="tab:red" if on_front else "tab:gray", zorder=3)
        ax.annotate(r.name, (cost, acc), xytext=(4, 4), textcoords="offset points")
    ordered = sorted((p for p in points if p[0].name in front), key=lambda p: p[1])
    if ordered:
        ax.step([cost for _, cost, _ in ordered], [acc for _, _, acc in ordered],
                where="post", color="tab:red", alpha=0.6, label="Pareto front")
        ax.legend(loc="lower right")
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.12)  # room for the labels beside the outermost points
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best validation accuracy (%), 95 % interval")
    ax.grid(True, alpha=0.3, which="both")
    return _png(fig)


def _width_and_resolution(records: list[ModelRecord]) -> bytes:
    """One line per (model, width) through its resolutions, one marker per resolution: the MobileNet
    paper's two knobs, measured on this data."""
    fig, ax = _figure(WIDE, 4.6)
    sizes = sorted({r.image_size for r in records if r.image_size})
    marker_of: dict[Optional[int], str] = dict(zip(sizes, _markers()))
    # (model, width) -> (MACs, accuracy in %, record) of each record with both
    lines: defaultdict[tuple[str, Optional[float]], list[tuple[int, float, ModelRecord]]] = defaultdict(list)
    for r in records:
        if r.macs and r.best_val_acc is not None:
            lines[(r.model, r.width_mult)].append((r.macs, 100 * r.best_val_acc, r))
    colours = itertools.cycle(f"C{i}" for i in range(10))  # the default colour cycle, by name
    for (model, width), members in sorted(lines.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        members.sort(key=lambda m: m[0])
        colour = next(colours)
        label = model + (f" alpha={width:g}" if width is not None else "")
        ax.plot([macs for macs, _, _ in members], [acc for _, acc, _ in members], color=colour, alpha=0.7,
                label=label)
        for macs, acc, r in members:
            low, high = _error_bar(r, acc)
            ax.errorbar(macs, acc, yerr=[low, high], fmt=marker_of.get(r.image_size, "o"),
                        color=colour, capsize=3, markersize=6)
            ax.annotate(f"{r.image_size} px", (macs, acc),
                        xytext=(4, -10), textcoords="offset points")
    for size in sizes:
        ax.plot([], [], marker_of[size], color="black", linestyle="none", label=f"{size} px")
    ax.set_xscale("log")
    ax.margins(x=0.2, y=0.12)
    ax.set_xlabel("MACs (multiply-adds) per image at its resolution, log scale")
    ax.set_ylabel("best validation accuracy (%), 95 % interval")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(ncol=2)
    return _png(fig)


def _train_val_curves(records: list[ModelRecord]) -> bytes:
    """Loss and accuracy by epoch, training dashed and validation solid, one row per model; with
    repeats, one pair of lines per seed."""
    fig, axes = _figure(WIDE, 2.4 * len(records) + 0.5, rows=len(records), cols=2)
    fig.suptitle("training (dashed) and validation (solid), by epoch")
    for row, r in zip(axes, records):
        histories = [run.history for run in r.runs] or [r.history]
        for k, history in enumerate(histories):
            epochs = [h["epoch"] for h in history]
            alpha = 1.0 if k == 0 else 0.45
            for ax, metric, scale in ((row[0], "loss", 1), (row[1], "acc", 100)):
                for split, style, colour in (("train", "--", "tab:blue"), ("val", "-", "tab:orange")):
                    values = [v for h in history if (v := h.get(f"{split}_{metric}")) is not None]
                    if len(values) == len(history):
                        ax.plot(epochs, [scale * v for v in values], style, color=colour, alpha=alpha,
                                marker="o" if len(epochs) == 1 else None,  # one epoch: a point, not a line
                                label=split if k == 0 else None)
        row[0].set_title(r.name + (f" ({len(histories)} seeds)" if len(histories) > 1 else ""), loc="left")
        row[0].set_ylabel("loss")
        row[1].set_ylabel("accuracy (%)")
        row[1].set_ylim(0, 102)  # the same scale for every model: gaps compare at a glance
        for ax in row:
            ax.grid(True, alpha=0.3)
            ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs
            if len(histories[0]) == 1:  # a range of one: the locator would still tick fractions
                ax.set_xticks([histories[0][0]["epoch"]])
    axes[0][1].legend(loc="lower right")
    axes[-1][0].set_xlabel("epoch")
    axes[-1][1].set_xlabel("epoch")
    return _png(fig)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")  # a figure outside pyplot is freed with its last reference
    return buf.getvalue()
