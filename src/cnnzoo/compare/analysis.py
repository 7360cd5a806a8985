"""What the numbers say: the Pareto front and the verdict in words.

Only models whose status is ``"done"`` take part; failed ones are listed separately in the report.
Accuracy is the best validation accuracy of each run (a fraction in [0, 1]).
"""
from __future__ import annotations

import math
from typing import Optional

from cnnzoo.text import format_count, format_percent

# The rule for "best trade-off", stated once here and quoted in the report.
TRADE_OFF_TOLERANCE_POINTS = 1.0
TRADE_OFF_RULE = (
    "Best trade-off = the model with the fewest MACs whose best validation accuracy is within "
    f"{TRADE_OFF_TOLERANCE_POINTS:g} percentage point of the most accurate model "
    "(ties broken by higher accuracy). It always lies on the accuracy-vs-MACs Pareto front."
)


def done(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("status") == "done"]


def pareto_front(records: list[dict], cost_key: str, acc_key: str = "best_val_acc") -> list[str]:
    """Names of the models no other model beats on both counts (higher ``acc_key``, lower ``cost_key``).

    A model is dominated when another is at least as accurate and at least as cheap, and strictly
    better on one of the two. The front is returned cheapest first.
    """
    points = [r for r in done(records) if _finite(r.get(cost_key)) and _finite(r.get(acc_key))]

    def dominates(a: dict, b: dict) -> bool:
        at_least = a[acc_key] >= b[acc_key] and a[cost_key] <= b[cost_key]
        strictly = a[acc_key] > b[acc_key] or a[cost_key] < b[cost_key]
        return at_least and strictly

    front = [p for p in points if not any(dominates(q, p) for q in points if q is not p)]
    return [p["name"] for p in sorted(front, key=lambda r: (r[cost_key], -r[acc_key]))]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def best_trade_off(records: list[dict], tolerance_points: float = TRADE_OFF_TOLERANCE_POINTS) -> Optional[dict]:
    """The cheapest model (fewest MACs) within ``tolerance_points`` of the best accuracy; see TRADE_OFF_RULE."""
    finished = [r for r in done(records) if _finite(r.get("macs")) and _finite(r.get("best_val_acc"))]
    if not finished:
        return None
    top = max(r["best_val_acc"] for r in finished)
    close = [r for r in finished if (top - r["best_val_acc"]) * 100 <= tolerance_points + 1e-9]
    return min(close, key=lambda r: (r["macs"], -r["best_val_acc"]))


def verdict(records: list[dict]) -> list[str]:
    """The verdict as a few sentences: most accurate, fastest, best trade-off, failures."""
    finished = done(records)
    lines: list[str] = []
    if not finished:
        lines.append("No model finished, so there is nothing to compare yet.")
    else:
        best = max(finished, key=lambda r: r["best_val_acc"])
        lines.append(f"Most accurate: {best['name']} ({_pct(best['best_val_acc'])} best validation "
                     f"accuracy, epoch {best.get('best_epoch')}).")
        timed = [r for r in finished if _finite(r.get("latency_b1_ms"))]
        if timed:
            fastest = min(timed, key=lambda r: r["latency_b1_ms"])
            lines.append(f"Fastest: {fastest['name']} ({fastest['latency_b1_ms']:.2f} ms per image at "
                         f"batch 1; {_pct(fastest['best_val_acc'])} accuracy).")
        trained = [r for r in finished if _finite(r.get("train_time_s"))]
        if len(trained) > 1:
            quickest = min(trained, key=lambda r: r["train_time_s"])
            lines.append(f"Quickest to train: {quickest['name']} ({quickest['train_time_s']:.1f} s in all).")
        lines.append(_trade_off_sentence(finished, best))
    failed = [r for r in records if r.get("status") != "done"]
    for r in failed:
        lines.append(f"{r['name']}: {r.get('status')} - {r.get('reason') or 'no reason recorded'}.")
    return lines


def _trade_off_sentence(finished: list[dict], best: dict) -> str:
    pick = best_trade_off(finished)
    if pick is None:
        return "Best trade-off: not available (no MACs were measured)."
    if pick["name"] == best["name"]:
        return (f"Best trade-off: {pick['name']} - no model within {TRADE_OFF_TOLERANCE_POINTS:g} point "
                "of it costs fewer MACs.")
    gap = (best["best_val_acc"] - pick["best_val_acc"]) * 100
    ratio = best["macs"] / pick["macs"] if pick["macs"] else float("inf")
    cheaper = f"{ratio:.1f}x less compute" if ratio >= 1 else f"{1 / ratio:.1f}x more compute"
    return (f"Best trade-off: {pick['name']} - within {gap:.1f} points of the best "
            f"({_pct(pick['best_val_acc'])}) at {cheaper} ({format_count(pick['macs'])} MACs "
            f"against {format_count(best['macs'])}).")


def _pct(fraction: float) -> str:
    return f"{format_percent(fraction)} %"
