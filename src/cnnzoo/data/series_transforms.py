"""What a series goes through before WaveNet sees it, and back: a log for positive multiplicative
series, first or seasonal differencing for a trend or a season, and a per-window level.

    season = detect_season(series.steps)                     # 12 for a monthly date column
    transform = choose_transform(train_values, season)      # or parse_transform("log+seasonal-diff", season)
    changed = transform.apply(values)                        # [C, T] -> [C, T - transform.lag]
    transform.invert(changed[:, -h:], history=values[:, :-h])  # == values[:, -h:] (to rounding)

The reason for all of it: a network cannot extrapolate a level it never saw. Standardising once by
the training part's statistics (what the series task did before) leaves a trending series' future
outside everything the network was trained on, so its forecast falls back to a level it knows.
Differencing (ARIMA's d and D) turns a trend into a level and a season into a constant; a
per-window level (GluonTS' WaveNet and DeepAR, and Chronos, scale each window by its mean) makes the
network see every window relative to where it starts. After these the series is still standardised
by its training part's mean and standard deviation (:class:`cnnzoo.data.series.SeriesSplits`).

**The default** (:func:`choose_transform`, on the training part only, so validation never decides):

1. ``log`` when every value is positive and the series is multiplicative: its level changes by at
   least ``LOG_LEVEL_RATIO`` across the training part and the size of its step-to-step changes
   grows with the level (correlation of the two over chunks at least ``LOG_CORRELATION``), as in the
   airline passengers. A log turns that into an additive series.
2. ``seasonal-diff`` when there is a season (``season > 1``, at least three of them) and it is
   strong: the autocorrelation at the seasonal lag of the first differences is at least
   ``SEASONAL_ACF``. Seasonal differencing removes a linear trend as well.
3. else ``diff`` when there is a trend: a straight line explains at least ``TREND_R2`` of the
   training part's variance, or the series wanders like a random walk (lag-1 autocorrelation of the
   levels at least ``RANDOM_WALK_ACF`` while that of its differences is below ``0.5``).
4. else ``none``: a series that returns to its mean (sunspots, the Nile) is modelled as it is.

The thresholds are the usual rules of thumb (Hyndman & Athanasopoulos, *Forecasting: Principles and
Practice*, ch. 9 and 6.7 on seasonal strength), not tuned on the benchmark series.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Optional, Sequence, Union

import numpy as np

from cnnzoo.data.splits import DataError

# --- the default's thresholds (see the module docstring) ---
LOG_LEVEL_RATIO = 1.5
LOG_CORRELATION = 0.6
SEASONAL_ACF = 0.3
TREND_R2 = 0.5
RANDOM_WALK_ACF = 0.95
# The period a step column's spacing implies (days between steps -> steps per season).
SEASONS_BY_DAYS = ((1 / 24, 24), (1, 7), (7, 52), (30.4, 12), (91.3, 4))
WINDOW_LEVELS = ("window-mean", "window-last")
NAMES = ("none", "log", "diff", "seasonal-diff", *WINDOW_LEVELS)


@dataclass(frozen=True)
class Log:
    """``log(x)`` for a positive series; inverted by ``exp``."""

    def apply(self, values: np.ndarray) -> np.ndarray:
        if not (values > 0).all():
            raise DataError("the log transform needs every value above 0; choose another --transform")
        return np.log(values)

    def invert(self, values: np.ndarray, history: np.ndarray) -> np.ndarray:
        return np.exp(values)


@dataclass(frozen=True)
class Difference:
    """``x[t] - x[t - lag]`` (lag 1: first differences; the season: seasonal differences); inverted
    by adding each difference to the value ``lag`` steps before, from the history's last ``lag``."""

    lag: int = 1

    def apply(self, values: np.ndarray) -> np.ndarray:
        if values.shape[-1] <= self.lag:
            raise DataError(f"differencing at lag {self.lag} needs more than {self.lag} steps, "
                            f"the series has {values.shape[-1]}")
        return values[..., self.lag:] - values[..., :-self.lag]

    def invert(self, values: np.ndarray, history: np.ndarray) -> np.ndarray:
        """``values`` ``[..., C, H]`` differences after ``history`` ``[C, T]`` (T >= lag) -> levels."""
        if history.shape[-1] < self.lag:
            raise ValueError(f"inverting lag-{self.lag} differences needs {self.lag} steps of history")
        shape = np.broadcast_shapes(values.shape[:-1], history.shape[:-1])
        levels = np.concatenate([np.broadcast_to(history[..., -self.lag:], (*shape, self.lag)),
                                 np.broadcast_to(values, (*shape, values.shape[-1]))], axis=-1).astype(np.float64)
        for t in range(self.lag, levels.shape[-1]):
            levels[..., t] += levels[..., t - self.lag]
        return levels[..., self.lag:]


Step = Union[Log, Difference]


@dataclass(frozen=True)
class SeriesTransform:
    """The series-wide steps, in order (``log`` before differencing), and the per-window level the
    task takes off every window (None, ``"mean"`` or ``"last"``); ``name`` is what
    ``--transform`` takes and the checkpoint keeps, ``season`` the period seasonal steps use."""

    steps: tuple[Step, ...] = ()
    window_level: Optional[str] = None
    season: int = 1
    reason: str = ""

    @property
    def name(self) -> str:
        parts = [("log" if isinstance(s, Log) else "diff" if s.lag == 1 else "seasonal-diff") for s in self.steps]
        if self.window_level:
            parts.append(f"window-{self.window_level}")
        return "+".join(parts) or "none"

    @property
    def lag(self) -> int:
        """Steps the series-wide steps consume at its start (the differences' lags)."""
        return sum(s.lag for s in self.steps if isinstance(s, Difference))

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``[C, T]`` in the CSV's units -> ``[C, T - lag]`` as the network is trained on (before standardising)."""
        out = np.asarray(values, dtype=np.float64)
        for step in self.steps:
            out = step.apply(out)
        return out

    def invert(self, values: np.ndarray, history: np.ndarray) -> np.ndarray:
        """``values`` ``[..., C, H]`` (transformed, the steps right after ``history``; leading
        dimensions for sample paths) -> the CSV's units. ``history`` ``[C, T]`` in the CSV's units,
        at least ``lag`` steps of it."""
        history = np.asarray(history, dtype=np.float64)
        stages = [history]  # the history as each step sees it
        for step in self.steps[:-1]:
            stages.append(step.apply(stages[-1]))
        out = np.asarray(values, dtype=np.float64)
        for step, seen in zip(reversed(self.steps), reversed(stages)):
            out = step.invert(out, seen)
        return out


def parse_transform(name: str, season: int = 1) -> SeriesTransform:
    """A transform by name: ``none``, or steps joined by ``+`` from ``log``, ``diff``,
    ``seasonal-diff``, ``window-mean``, ``window-last`` (``log+seasonal-diff``)."""
    parts = [p.strip() for p in str(name).split("+") if p.strip()]
    unknown = [p for p in parts if p not in NAMES]
    if unknown or not parts:
        raise DataError(f"--transform {name!r}: choose 'auto' or 'none', or steps joined by '+' from "
                        f"log, diff, seasonal-diff, window-mean, window-last")
    if "none" in parts:
        if len(parts) > 1:
            raise DataError(f"--transform {name!r}: 'none' cannot be combined")
        return SeriesTransform(season=season)
    if len(set(parts)) != len(parts) or sum(p in WINDOW_LEVELS for p in parts) > 1:
        raise DataError(f"--transform {name!r} names a step twice")
    if "seasonal-diff" in parts and season < 2:
        raise DataError(f"--transform {name!r} needs a season of 2 steps or more: give --season")
    order = ("log", "seasonal-diff", "diff")
    steps: list[Step] = []
    for part in sorted((p for p in parts if p in order), key=order.index):
        steps.append(Log() if part == "log" else Difference(season if part == "seasonal-diff" else 1))
    level = next((p.split("-")[1] for p in parts if p in WINDOW_LEVELS), None)
    return SeriesTransform(tuple(steps), level, season)


def choose_transform(train: Union[np.ndarray, Sequence[np.ndarray]], season: int = 1) -> SeriesTransform:
    """The default transform for a training part ``[C, T]`` in the CSV's units (module docstring);
    its ``reason`` says which test decided. Several columns, or several series (a list of 1-D
    training parts of any lengths, for one global model): a step is taken when every one calls for it."""
    train = [np.asarray(row, dtype=np.float64) for row in train]
    steps: list[Step] = []
    reasons = []
    if all(_multiplicative(row, season) for row in train):
        steps.append(Log())
        train = [np.log(row) for row in train]
        reasons.append("positive, with changes that grow with the level")
    seasonal = season > 1 and all(_seasonal_acf(row, season) >= SEASONAL_ACF for row in train)
    if seasonal:
        steps.append(Difference(season))
        reasons.append(f"a season of {season} steps (autocorrelation of the differences at lag {season}: "
                       f"{min(_seasonal_acf(row, season) for row in train):.2f})")
    elif all(_trending(row) for row in train):
        steps.append(Difference(1))
        reasons.append(f"a trend (a line explains {min(_r2(row) for row in train):.0%} of the variance)")
    reason = "; ".join(reasons) or "no trend, season or growth found: modelled as it is"
    return SeriesTransform(tuple(steps), None, season, reason)


def detect_season(steps: Optional[Sequence[str]]) -> int:
    """The seasonal period a step column implies: 12 for months, 4 for quarters, 7 for days, 52 for
    weeks, 24 for hours; 1 (none) for years, plain numbers or no step column."""
    if not steps or len(steps) < 3:
        return 1
    dates = [_date(s) for s in steps[:50]]
    if any(d is None for d in dates):
        return 1
    gaps = np.diff([d.timestamp() for d in dates if d is not None]) / 86400
    if not len(gaps) or np.median(gaps) <= 0:
        return 1
    gap = float(np.median(gaps))
    for days, period in SEASONS_BY_DAYS:
        if abs(gap - days) <= 0.1 * days:
            return period
    return 1


def _date(text: str) -> Optional[datetime]:
    text = text.strip()
    if len(text) == 7 and text[4] == "-":  # YYYY-MM
        text += "-01"
    if len(text) == 4 and text.isdigit():  # a bare year is a number, not a date with a season
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _multiplicative(row: np.ndarray, season: int) -> bool:
    if not (row > 0).all():
        return False
    chunk = max(season, 12)
    n = len(row) // chunk
    if n < 4:
        return False
    chunks = row[:n * chunk].reshape(n, chunk)
    levels = chunks.mean(axis=1)
    swings = np.abs(np.diff(chunks, axis=1)).mean(axis=1)
    if levels.max() / levels.min() < LOG_LEVEL_RATIO or swings.std() == 0:
        return False
    return float(np.corrcoef(levels, swings)[0, 1]) >= LOG_CORRELATION


def _acf(row: np.ndarray, lag: int) -> float:
    row = row - row.mean()
    denominator = float((row * row).sum())
    if lag >= len(row) or denominator == 0:
        return 0.0
    return float((row[:-lag] * row[lag:]).sum()) / denominator


def _seasonal_acf(row: np.ndarray, season: int) -> float:
    if len(row) < 3 * season + 1:
        return 0.0
    return _acf(np.diff(row), season)


def _r2(row: np.ndarray) -> float:
    t = np.arange(len(row), dtype=np.float64)
    if len(row) < 3 or row.std() == 0:
        return 0.0
    return float(np.corrcoef(t, row)[0, 1] ** 2)


def _trending(row: np.ndarray) -> bool:
    if len(row) < 8:
        return False
    if _r2(row) >= TREND_R2:
        return True
    return _acf(row, 1) >= RANDOM_WALK_ACF and _acf(np.diff(row), 1) < 0.5


def relevel(values, level: Optional[str], known: int):
    """A per-window level taken off ``values`` ``[N, C, W]`` (array or tensor): the mean of the first
    ``known`` steps (``"mean"``) or the value at step ``known - 1`` (``"last"``): the past a forecast
    from that point would see. Returns (the windows, the levels ``[N, C, 1]``); None: unchanged, 0."""
    if level is None:
        return values, 0
    known = max(1, min(int(known), values.shape[-1]))
    base = values[..., :known].mean(-1, keepdims=True) if level == "mean" else values[..., known - 1:known]
    return values - base, base
