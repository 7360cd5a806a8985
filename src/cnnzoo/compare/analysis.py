"""What the numbers say: the Pareto front, ties within the noise, over-fitting, and the verdict in words.

Only models whose status is ``"done"`` take part; failed ones are listed separately in the report.
Accuracy is the best validation accuracy of each run (a fraction in [0, 1]; with repeats, the mean
over seeds). Every function takes :class:`~cnnzoo.compare.record.ModelRecord` objects or the dicts
of a ``results.json``. Each rule is stated once here, and the report quotes it.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, TypeVar, Union

from cnnzoo.compare.record import SEED_SPREAD, ModelRecord, as_records
from cnnzoo.export.verify import MIN_AGREEMENT
from cnnzoo.text import format_count, format_percent

Records = Sequence[Union[ModelRecord, dict]]
Number = TypeVar("Number", int, float)

TRADE_OFF_TOLERANCE_POINTS = 1.0
TRADE_OFF_RULE = (
    "Best trade-off = the model with the fewest MACs whose best validation accuracy is within "
    f"{TRADE_OFF_TOLERANCE_POINTS:g} percentage point of the most accurate model "
    "(ties broken by higher accuracy). It always lies on the accuracy-vs-MACs Pareto front."
)
TIE_RULE = (
    "Ties: a model is indistinguishable from the most accurate one when the 95 % interval of the "
    "difference between their accuracies includes zero. That interval combines the two models' own "
    "intervals (Newcombe's square-and-add: the lead minus the root of the sum of the squared margins), "
    "each the Wilson score interval over the validation images, widened with --repeats to at least the "
    f"mean +- {SEED_SPREAD:g} standard deviations across seeds. The verdict then names no winner among "
    "the tied models; its recommendation picks the one that costs the fewest MACs. The rule is cautious: it treats the "
    "two accuracies as independent although both are measured on the same images, so a lead it calls "
    "clear is very unlikely to be noise, while a tie may hide a small real difference."
)
RECOMMEND_RULE = (
    "Recommended = the model with the fewest MACs among the most accurate one, those tied with it, "
    f"and those within {TRADE_OFF_TOLERANCE_POINTS:g} point of it; its mistakes are shown below."
)
OVERFIT_GAP_POINTS = 10.0
OVERFIT_RULE = (
    f"Over-fitting flag: training accuracy more than {OVERFIT_GAP_POINTS:g} points above validation "
    "accuracy at the last epoch (training accuracy is the running mean over that epoch's batches, "
    "augmented, so the true gap is if anything larger)."
)

# int8 (compare --runtime int8): a model is flagged when int8 loses more than this on validation...
INT8_COST_POINTS = 1.0
# ... or picks the fp32 model's class on fewer images than `cnnzoo export` requires of an int8 file.
INT8_MIN_AGREEMENT = MIN_AGREEMENT
INT8_COST_RULE = (
    f"int8 cost flag: the measured model loses more than {INT8_COST_POINTS:g} point in int8 on the validation "
    f"split, or picks the fp32 model's class on fewer than {INT8_MIN_AGREEMENT:.0%} of its images."
)


def done(records: Records) -> list[ModelRecord]:
    return [r for r in as_records(records) if r.done]


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _known(value: Optional[Number], r: ModelRecord, what: str) -> Number:
    """``r``'s number ``what``, which the caller's filter (``_finite``) made sure of: done records have
    every number, and the filters drop the hand-written ones that lack one."""
    if value is None:
        raise ValueError(f"{r.name}: {what} is not known; only records that have it should get here")
    return value


def _acc(r: ModelRecord) -> float:
    return _known(r.best_val_acc, r, "best_val_acc")


def _macs(r: ModelRecord) -> int:
    return _known(r.macs, r, "macs")


def pareto_front(records: Records, cost_key: str, acc_key: str = "best_val_acc") -> list[str]:
    """Names of the models no other model beats on both counts (higher ``acc_key``, lower ``cost_key``).

    A model is dominated when another is at least as accurate and at least as cheap, and strictly
    better on one of the two. The front is returned cheapest first.
    """
    points = [(r.name, getattr(r, cost_key), getattr(r, acc_key)) for r in done(records)
              if _finite(getattr(r, cost_key, None)) and _finite(getattr(r, acc_key, None))]

    def dominates(a, b) -> bool:
        return a[2] >= b[2] and a[1] <= b[1] and (a[2] > b[2] or a[1] < b[1])

    front = [p for p in points if not any(dominates(q, p) for q in points if q is not p)]
    return [name for name, _, _ in sorted(front, key=lambda p: (p[1], -p[2]))]


def best_trade_off(records: Records, tolerance_points: float = TRADE_OFF_TOLERANCE_POINTS) -> Optional[ModelRecord]:
    """The cheapest model (fewest MACs) within ``tolerance_points`` of the best accuracy; see TRADE_OFF_RULE."""
    finished = [r for r in done(records) if _finite(r.macs) and _finite(r.best_val_acc)]
    if not finished:
        return None
    top = max(_acc(r) for r in finished)
    close = [r for r in finished if (top - _acc(r)) * 100 <= tolerance_points + 1e-9]
    return min(close, key=lambda r: (_macs(r), -_acc(r)))


def most_accurate(records: Records) -> Optional[ModelRecord]:
    finished = [r for r in done(records) if _finite(r.best_val_acc)]
    return max(finished, key=_acc) if finished else None


def lead_lower_bound(leader: ModelRecord, other: ModelRecord) -> Optional[float]:
    """The lower end of the 95 % interval of ``leader``'s accuracy minus ``other``'s (Newcombe 1998,
    Statistics in Medicine 17:873, method 10: square-and-add of the two single-proportion intervals);
    None when either accuracy or interval is unknown."""
    a, b = leader.interval(), other.interval()
    if a is None or b is None or leader.best_val_acc is None or other.best_val_acc is None:
        return None
    lead = leader.best_val_acc - other.best_val_acc
    return lead - math.hypot(leader.best_val_acc - a[0], b[1] - other.best_val_acc)


def tied_with_best(records: Records) -> list[ModelRecord]:
    """The most accurate model and every model it does not lead beyond the noise (TIE_RULE), most
    accurate first. Only the best itself when intervals are unknown."""
    best = most_accurate(records)
    if best is None:
        return []
    tied = []
    for r in done(records):
        if r is best or not _finite(r.best_val_acc):
            continue
        bound = lead_lower_bound(best, r)
        if bound is not None and bound <= 0:
            tied.append(r)
    return [best] + sorted(tied, key=lambda r: -_acc(r))


def recommended(records: Records) -> Optional[ModelRecord]:
    """The model RECOMMEND_RULE picks (the most accurate one when no MACs were measured)."""
    best = most_accurate(records)
    if best is None:
        return None
    candidates = {r.name: r for r in tied_with_best(records)}
    pick = best_trade_off(records)
    if pick is not None:
        candidates[pick.name] = pick
    costed = [r for r in candidates.values() if _finite(r.macs)]
    return min(costed, key=lambda r: (_macs(r), -_acc(r))) if costed else best


def overfitting(records: Records, gap_points: float = OVERFIT_GAP_POINTS) -> list[ModelRecord]:
    """Models whose final training accuracy is more than ``gap_points`` above validation (OVERFIT_RULE)."""
    return [r for r in done(records) if r.overfit_gap is not None and 100 * r.overfit_gap > gap_points]


def verdict(records: Records) -> list[str]:
    """The verdict as a few sentences: most accurate (or the tie), fastest, trade-off, recommendation,
    over-fitting, failures."""
    records = as_records(records)
    finished = done(records)
    lines = _finished_sentences(finished) if finished else ["No model finished, so there is nothing to compare yet."]
    return lines + [f"{r.name}: {r.status} - {r.reason or 'no reason recorded'}." for r in records if not r.done]


def _finished_sentences(finished: list[ModelRecord]) -> list[str]:
    best = most_accurate(finished)
    if best is None:  # done records all have one, but a hand-written results.json may not
        return ["No finished model has a validation accuracy, so there is nothing to compare yet."]
    tied = tied_with_best(finished)
    if len(tied) > 1:
        lines = [_tie_sentence(tied)]
    else:
        lines = [f"Most accurate: {best.name} ({accuracy_text(best, 'best validation accuracy')}, "
                 f"epoch {best.best_epoch})" + _clear_lead(best, finished) + "."]
    timed = [r for r in finished if _finite(r.latency_b1_ms)]
    if timed:
        lines.append(_fastest_sentence(min(timed, key=lambda r: _known(r.latency_b1_ms, r, "latency_b1_ms"))))
    trained = [r for r in finished if _finite(r.train_time_s)]
    if len(trained) > 1:
        quickest = min(trained, key=lambda r: _known(r.train_time_s, r, "train_time_s"))
        lines.append(f"Quickest to train: {quickest.name} ({quickest.train_time_s:.1f} s"
                     f"{' per run' if quickest.repeats > 1 else ' in all'}).")
    if len(finished) > 1:
        lines.append(_recommendation(finished, best, tied))
    lines += [line for line in map(int8_cost_sentence, finished) if line]
    lines += [f"Over-fitting: {r.name} - training accuracy {_pct(r.final_train_acc)} against "
              f"{_pct(r.final_val_acc)} on validation at the last epoch "
              f"({100 * _known(r.overfit_gap, r, 'overfit_gap'):.1f} points apart)."
              for r in overfitting(finished)]
    return lines


def _fastest_sentence(fastest: ModelRecord) -> str:
    where = "" if fastest.runtime == "torch" else f" in {fastest.runtime}"
    int8 = fastest.runtime_accuracy
    accuracy = (f"{_pct(fastest.best_val_acc)} accuracy" if int8 is None else
                f"{_pct(fastest.best_val_acc)} accuracy in fp32, {_pct(int8.int8)} in int8")
    return f"Fastest: {fastest.name} ({fastest.latency_b1_ms:.2f} ms per image at batch 1{where}; {accuracy})."


def int8_cost_sentence(r: ModelRecord) -> Optional[str]:
    """A line for a model that int8 costs accuracy (INT8_COST_RULE), else None."""
    acc, agreement = r.runtime_accuracy, r.int8_agreement
    if acc is None:
        return None
    if acc.points > -INT8_COST_POINTS and (agreement is None or agreement >= INT8_MIN_AGREEMENT):
        return None
    return (f"int8 cost: {r.name} - {_pct(acc.fp32)} in fp32, {_pct(acc.int8)} in int8 "
            f"({acc.became_wrong} validation images became wrong, {acc.became_right} right"
            + (f"; same class as fp32 on {_pct(agreement)}" if agreement is not None else "")
            + "). int8 rounds every activation, which flips predictions that were close to a tie between two "
            "classes; `cnnzoo export --quantize int8` prints the same figures for the file you ship.")


def _tie_sentence(tied: list[ModelRecord]) -> str:
    names = ", ".join(f"{r.name} ({accuracy_text(r)})" for r in tied)
    return (f"Most accurate: no clear winner - {names} are indistinguishable within the noise "
            "(the 95 % interval of each one's difference from the leader includes zero).")


def _clear_lead(best: ModelRecord, finished: list[ModelRecord]) -> str:
    """', ahead of the next beyond the noise' when intervals say so."""
    others = [r for r in finished if r is not best and _finite(r.best_val_acc)]
    if best.interval() is None or not others:
        return ""
    runner_up = max(others, key=_acc)
    return f", ahead of {runner_up.name} ({_pct(runner_up.best_val_acc)}) beyond the noise"


def _recommendation(finished: list[ModelRecord], best: ModelRecord, tied: list[ModelRecord]) -> str:
    """The one recommendation (RECOMMEND_RULE) and why: the verdict names no other pick."""
    pick = recommended(finished)
    assert pick is not None  # there is a most accurate model
    head = (f"Recommended: {pick.name} ({accuracy_text(pick)}"
            + (f", {format_count(pick.macs)} MACs" if _finite(pick.macs) else "") + ") - ")
    if pick.name == best.name:
        if not _finite(best.macs):
            return head + "the most accurate; no MACs were measured to weigh it against the others."
        return head + (f"the most accurate, and no model tied with it or within {TRADE_OFF_TOLERANCE_POINTS:g} "
                       "point of it costs fewer MACs.")
    why = ("indistinguishable within the noise from the most accurate" if pick.name in {r.name for r in tied} else
           f"within {(_acc(best) - _acc(pick)) * 100:.1f} points of the most accurate")
    if not _finite(best.macs):
        return head + f"{why}, {best.name}, whose MACs are not known."
    return head + (f"{why}, {best.name} ({_pct(best.best_val_acc)}, {format_count(best.macs)} MACs), at "
                   f"{_macs(best) / max(_macs(pick), 1):.1f}x fewer MACs: the cheapest model tied with it or "
                   f"within {TRADE_OFF_TOLERANCE_POINTS:g} point of it.")


def accuracy_text(r: ModelRecord, label: str = "") -> str:
    """'94.5 %' or '94.5 +- 0.4 %', then ``label``, ' over 3 seeds' and ', 95 % interval 92.6-96.0' as known."""
    if r.best_val_acc_std is None:
        text = _pct(r.best_val_acc) + (f" {label}" if label else "")
    else:
        seeds = f"over {len(r.runs)} seeds" if r.runs else "across seeds"
        text = (f"{format_percent(r.best_val_acc)} +- {format_percent(r.best_val_acc_std)} %"
                + (f" {label}" if label else "") + f" {seeds}")
    interval = r.interval()
    if interval is not None:
        text += f", 95 % interval {format_percent(interval[0])}-{format_percent(interval[1])}"
    return text


def _pct(fraction: Optional[float]) -> str:
    return f"{format_percent(fraction)} %"
