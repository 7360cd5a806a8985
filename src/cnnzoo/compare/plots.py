"""The comparison's four plots, drawn with matplotlib's Agg backend (no display needed) as PNG bytes.

- validation accuracy against epoch, all models together;
- validation accuracy against wall-clock training time;
- best accuracy against MACs, and against latency at batch 1, with the Pareto front marked.
"""
from __future__ import annotations

import io
import itertools

from cnnzoo.compare.analysis import done, pareto_front

# (file stem, title) of each plot, in the order the report shows them.
PLOTS = (
    ("accuracy_vs_epoch", "Validation accuracy by epoch"),
    ("accuracy_vs_time", "Validation accuracy by training time"),
    ("accuracy_vs_macs", "Accuracy against compute (MACs)"),
    ("accuracy_vs_latency", "Accuracy against latency (batch 1)"),
)


def _pyplot():
    # measured: matplotlib.pyplot costs about 0.2 s to import; only paid when a plot is drawn
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


def render_plots(records: list[dict]) -> dict[str, bytes]:
    """``{stem: png_bytes}`` for every plot in :data:`PLOTS` (empty when no model finished)."""
    finished = done(records)
    if not finished:
        return {}
    return {
        "accuracy_vs_epoch": _curves(finished, x="epoch", xlabel="epoch"),
        "accuracy_vs_time": _curves(finished, x="elapsed_s", xlabel="training time (s, wall clock)"),
        "accuracy_vs_macs": _trade_off(finished, "macs", "MACs (multiply-adds) per image, log scale"),
        "accuracy_vs_latency": _trade_off(finished, "latency_b1_ms",
                                          "latency at batch 1 (ms per image), log scale"),
    }


def _markers():
    return itertools.cycle("osD^v<>ph*")


def _curves(records: list[dict], x: str, xlabel: str) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for record, marker in zip(records, _markers()):
        history = record.get("history") or []
        xs = _elapsed(history) if x == "elapsed_s" else [h.get("epoch") for h in history]
        ys = [100 * h["val_acc"] for h in history]
        ax.plot(xs, ys, marker=marker, markersize=4, label=record["name"])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
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


def _trade_off(records: list[dict], cost_key: str, xlabel: str) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    points = [r for r in records if r.get(cost_key)]
    front = set(pareto_front(points, cost_key))
    for r in points:
        on_front = r["name"] in front
        ax.scatter(r[cost_key], 100 * r["best_val_acc"], s=60 if on_front else 30,
                   color="tab:red" if on_front else "tab:gray", zorder=3)
        ax.annotate(r["name"], (r[cost_key], 100 * r["best_val_acc"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ordered = sorted((r for r in points if r["name"] in front), key=lambda r: r[cost_key])
    if ordered:
        ax.step([r[cost_key] for r in ordered], [100 * r["best_val_acc"] for r in ordered],
                where="post", color="tab:red", alpha=0.6, label="Pareto front")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.12)  # room for the labels beside the outermost points
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best validation accuracy (%)")
    ax.grid(True, alpha=0.3, which="both")
    return _png(fig)


def _png(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
