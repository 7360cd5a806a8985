"""Is the forecast any good? Its error on the held-out end of the series, next to the forecasts
every forecaster is checked against: naive (repeat the last value), seasonal naive (repeat the last
season) and exponential smoothing (statsmodels' Holt-Winters, the optional ``forecast`` extra).

    scores = run_backtest(values, forecaster, horizon=24, origins=3, season=12)
    print(scores.table()); print(scores.verdict())
    scores.save("runs/x/backtest.csv")                   # + backtest.json

**Rolling origins**: ``origins`` forecasts of ``horizon`` steps, the last ending at the series' end,
each origin a horizon before the next, every one from the history before it only.

**Measures**, per origin and column, then averaged: MAE, RMSE, sMAPE (in percent, 0 to 200, as the
M4 competition) and MASE, the MAE divided by the in-sample MAE of the seasonal-naive forecast
(Hyndman & Koehler 2006; M4 scales by the seasonal one): below 1 is better than repeating the last
season one step ahead within the history. With sample paths, ``coverage`` is the share of actual
values inside the 10th-90th percentile band (80 % when the intervals are right).

**Several series** (one global model, :class:`PanelBacktest`): a backtest per series, and over all
of them the mean MASE and sMAPE, which have no units and so average across series of any scale (as
the M4 competition ranks); MAE and RMSE stay per series, where their units mean something.
"""
from __future__ import annotations

import csv
import io
import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import numpy as np

from cnnzoo.display import html_table
from cnnzoo.errors import UserError
from cnnzoo.files import atomic_write_text
from cnnzoo.text import table

MODEL, NAIVE, SEASONAL_NAIVE, ETS = "wavenet", "naive", "seasonal naive", "ets"
ETS_MISSING = "statsmodels is not installed: pip install 'cnnzoo[forecast]' (or statsmodels>=0.14)"
NOMINAL_COVERAGE = 0.8  # the 10th-90th percentile band


class Forecaster(Protocol):
    """What the backtest needs of a model: (point ``[C, H]``, sample paths ``[N, C, H]`` or None)
    after a history ``[C, T]`` in the series' units (:class:`cnnzoo.training.generation.SeriesForecaster`)."""

    @property
    def receptive_field(self) -> int: ...

    def __call__(self, history: np.ndarray, horizon: int, *, samples: int = 0, temperature: float = 1.0,
                 seed: int = 0) -> tuple[np.ndarray, Optional[np.ndarray]]: ...


@dataclass(frozen=True)
class BacktestRow:
    """One method's errors, averaged over origins and columns; ``note`` why a row has none."""

    method: str
    mae: float = math.nan
    rmse: float = math.nan
    mase: float = math.nan
    smape: float = math.nan
    coverage: Optional[float] = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BacktestRow:
        return cls(**values)


@dataclass(frozen=True)
class Backtest:
    """The backtest's table: one row per method (the model's first), and how it was run."""

    rows: tuple[BacktestRow, ...]
    horizon: int
    origins: int
    season: int
    columns: tuple[str, ...]
    source: str = ""

    def row(self, method: str) -> BacktestRow:
        return next(r for r in self.rows if r.method == method)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.to_dict() for r in self.rows], "horizon": self.horizon, "origins": self.origins,
                "season": self.season, "columns": list(self.columns), "source": self.source}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Backtest:
        return cls(tuple(BacktestRow.from_dict(r) for r in values["rows"]), int(values["horizon"]),
                   int(values["origins"]), int(values["season"]), tuple(values["columns"]), values.get("source", ""))

    def table(self) -> str:
        """The rows as an aligned text table with a title line."""
        coverage = any(r.coverage is not None for r in self.rows)
        headers = ["method", "MAE", "RMSE", "MASE", "sMAPE %"] + (["80% coverage"] if coverage else [])
        lines = []
        for r in self.rows:
            if r.note and math.isnan(r.mae):
                lines.append([r.method, r.note])
                continue
            cells = [r.method, _num(r.mae), _num(r.rmse), _num(r.mase), _num(r.smape)]
            if coverage:
                cells.append("" if r.coverage is None else f"{r.coverage:.0%}")
            lines.append(cells)
        title = (f"backtest of {', '.join(self.columns)} on {self.source or 'the series'}: {self.origins} origin"
                 f"{'s' if self.origins != 1 else ''} x {self.horizon} steps, "
                 f"{'season ' + str(self.season) if self.season > 1 else 'no season'}")
        return title + "\n" + table(lines, headers, "lrrrrr")

    def _repr_html_(self) -> str:
        """In a notebook: the table, with the verdict as its caption."""
        rows = [[r.method, r.note] if r.note and math.isnan(r.mae) else
                [r.method, _num(r.mae), _num(r.rmse), _num(r.mase), _num(r.smape),
                 "" if r.coverage is None else f"{r.coverage:.0%}"] for r in self.rows]
        return html_table(rows, ["method", "MAE", "RMSE", "MASE", "sMAPE %", "80% coverage"], align="lrrrrr",
                          caption=self.verdict())

    def verdict(self) -> str:
        """One line: is the model better than seasonal naive (MASE), and are its intervals right?"""
        model, baseline = self.row(MODEL), self.row(SEASONAL_NAIVE)
        name = "seasonal naive (repeat the last season)" if self.season > 1 else "naive (repeat the last value)"
        # MASE is undefined when the history repeats itself exactly (a zero scale): compare the MAE then
        measure, ours, theirs = (("MASE", model.mase, baseline.mase) if math.isfinite(model.mase)
                                 else ("MAE", model.mae, baseline.mae))
        if ours > theirs:
            line = (f"WORSE than {name}: {measure} {ours:.3g} against {theirs:.3g}; do not trust this "
                    f"forecast (try another --transform, more data or a longer run)")
        else:
            line = f"better than {name}: {measure} {ours:.3g} against {theirs:.3g}"
        if model.coverage is not None:
            line += (f"; the 80 % intervals held {model.coverage:.0%} of the actual values")
        return line

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        names = list(BacktestRow.__dataclass_fields__)
        writer.writerow(names)
        for r in self.rows:
            writer.writerow(["" if v is None or (isinstance(v, float) and math.isnan(v)) else v
                             for v in (getattr(r, n) for n in names)])
        return buffer.getvalue()

    def save(self, path) -> list[Path]:
        """The table as CSV at ``path`` and the whole record as JSON beside it (atomically)."""
        return _save_table(self, path)


@dataclass(frozen=True)
class PanelBacktest:
    """The backtests of one global model on several series (``series``, one :class:`Backtest` each)
    and ``overall``: per method, the series' MASE, sMAPE and coverage averaged (MAE and RMSE left
    empty: their units differ from series to series)."""

    series: tuple[Backtest, ...]

    @property
    def overall(self) -> Backtest:
        first = self.series[0]
        rows = []
        for method in (r.method for r in first.rows):
            rows_of = [b.row(method) for b in self.series]
            scored = [r for r in rows_of if not (r.note and math.isnan(r.mae))]
            if not scored:
                rows.append(BacktestRow(method, note=rows_of[0].note))
                continue
            covered = [r.coverage for r in scored if r.coverage is not None]
            rows.append(BacktestRow(method, mase=_mean(np.array([r.mase for r in scored])),
                                    smape=float(np.mean([r.smape for r in scored])),
                                    coverage=float(np.mean(covered)) if covered else None))
        horizons = {b.horizon for b in self.series}
        return Backtest(tuple(rows), horizons.pop() if len(horizons) == 1 else 0, first.origins, first.season,
                        (f"all {len(self.series)} series",), first.source)

    def row(self, method: str) -> BacktestRow:
        """``method``'s row over all series."""
        return self.overall.row(method)

    def worse(self) -> list[str]:
        """The series whose forecast is worse than the seasonal-naive one (by MASE, else MAE)."""
        names = []
        for b in self.series:
            model, baseline = b.row(MODEL), b.row(SEASONAL_NAIVE)
            ours, theirs = ((model.mase, baseline.mase) if math.isfinite(model.mase) else (model.mae, baseline.mae))
            if ours > theirs:
                names.append(", ".join(b.columns))
        return names

    def table(self) -> str:
        """Every series' table, then the one over all of them."""
        overall = self.overall.table().split("\n", 1)[1]
        title = (f"over all {len(self.series)} series of {self.overall.source or 'the file'}: the mean MASE and "
                 f"sMAPE (MAE and RMSE have each series' units: see its table)")
        return "\n\n".join([b.table() for b in self.series] + [title + "\n" + overall])

    def verdict(self) -> str:
        """The verdict on the mean MASE, and which series lose to seasonal naive."""
        overall = self.overall
        if not math.isfinite(overall.row(MODEL).mase):
            line = "MASE is undefined for every series (each repeats itself exactly): see each series' table"
        else:
            line = f"over all {len(self.series)} series: {overall.verdict()}"
        worse = self.worse()
        if worse and len(worse) < len(self.series):
            line += f"; worse than seasonal naive on {len(worse)} of {len(self.series)}: {', '.join(worse)}"
        return line

    def _repr_html_(self) -> str:
        return "".join([self.overall._repr_html_()] + [b._repr_html_() for b in self.series])

    def to_dict(self) -> dict[str, Any]:
        return {"series": [b.to_dict() for b in self.series]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PanelBacktest:
        return cls(tuple(Backtest.from_dict(b) for b in values["series"]))

    def to_csv(self) -> str:
        """One table: a ``series`` column, each series' rows, then the overall rows."""
        parts = [(", ".join(b.columns), b) for b in self.series] + [("overall", self.overall)]
        lines = [f"series,{parts[0][1].to_csv().splitlines()[0]}"]
        for name, b in parts:
            lines += [f"{_csv_cell(name)},{row}" for row in b.to_csv().splitlines()[1:]]
        return "\n".join(lines) + "\n"

    def save(self, path) -> list[Path]:
        """The table as CSV at ``path`` and the record as JSON beside it (atomically)."""
        return _save_table(self, path)


def _save_table(record, path) -> list[Path]:
    """``record.to_csv()`` at ``path`` and ``record.to_dict()`` as JSON beside it, each written atomically."""
    path = Path(path)
    json_path = path.with_suffix(".json")
    atomic_write_text(path, record.to_csv())
    atomic_write_text(json_path, json.dumps(record.to_dict(), indent=2, allow_nan=True) + "\n")
    return [path, json_path]


def _csv_cell(text: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([text])
    return buffer.getvalue()


def _mean(values: np.ndarray) -> float:
    """The mean of the finite values; NaN when there is none (a MASE whose scale is zero)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def _num(x: float) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.4g}"


# --------------------------------------------------------------------------------- measures

def mase_scale(history: np.ndarray, season: int) -> np.ndarray:
    """Per column: the in-sample MAE of the seasonal-naive forecast (naive for a season below 2)."""
    lag = season if season > 1 and history.shape[-1] > season else 1
    scale = np.abs(history[..., lag:] - history[..., :-lag]).mean(-1)
    return np.where(scale > 0, scale, np.nan)


def errors(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
    """Per column (``[C, H]`` arrays): MAE, mean squared error, MASE and sMAPE."""
    error = forecast - actual
    mae = np.abs(error).mean(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        denominator = np.abs(actual) + np.abs(forecast)
        smape = np.where(denominator > 0, 2 * np.abs(error) / np.where(denominator > 0, denominator, 1), 0)
    return {"mae": mae, "mse": (error ** 2).mean(-1), "mase": mae / scale, "smape": 100 * smape.mean(-1)}


def coverage(actual: np.ndarray, paths: np.ndarray) -> float:
    """The share of ``actual`` ``[C, H]`` inside the 10th-90th percentile of ``paths`` ``[N, C, H]``."""
    low, high = np.quantile(paths, (0.1, 0.9), axis=0)
    return float(((actual >= low) & (actual <= high)).mean())


# --------------------------------------------------------------------------------- baselines

def naive(history: np.ndarray, horizon: int) -> np.ndarray:
    """The last value, repeated."""
    return np.repeat(history[..., -1:], horizon, axis=-1)


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The last season, repeated (naive for a season below 2)."""
    if season < 2 or history.shape[-1] < season:
        return naive(history, horizon)
    last = history[..., -season:]
    return np.concatenate([last] * math.ceil(horizon / season), axis=-1)[..., :horizon]


def ets(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Holt-Winters exponential smoothing per column: an additive damped trend and, with two
    seasons of history, an additive season. Raises ImportError without statsmodels."""
    # statsmodels is the optional "forecast" extra, and slow to import: imported when a backtest runs.
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    out = np.empty((history.shape[0], horizon))
    for c, row in enumerate(np.asarray(history, dtype=np.float64)):
        seasonal = season > 1 and len(row) >= 2 * season + 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on short or flat series
            fit = ExponentialSmoothing(row, trend="add", damped_trend=True, seasonal="add" if seasonal else None,
                                       seasonal_periods=season if seasonal else None).fit()
        out[c] = fit.forecast(horizon)
    return out


# --------------------------------------------------------------------------------- the backtest

def run_backtest(values: np.ndarray, forecaster: Optional[Forecaster], *, horizon: int, origins: int = 1,
                 season: int = 1, samples: int = 0, columns: Sequence[str] = ("value",), temperature: float = 1.0,
                 seed: int = 0, source: str = "") -> Backtest:
    """Forecast the last ``origins`` horizons of ``values`` ``[C, T]`` (module docstring) with the
    model (``forecaster``; None scores the baselines only) and the baselines, and score them."""
    values = np.asarray(values, dtype=np.float64)
    if origins < 1 or horizon < 1:
        raise UserError(f"a backtest needs at least one origin and a horizon of 1 or more, got {origins} and {horizon}")
    first = values.shape[-1] - origins * horizon
    receptive_field = forecaster.receptive_field if forecaster is not None else 0
    need = max(2, season + 1, receptive_field)
    if first < need:
        raise UserError(f"{source or 'the series'} has {values.shape[-1]} steps: a backtest of {origins} x {horizon} "
                        f"steps needs {need + origins * horizon}, {need} of them before the first origin (the "
                        f"model's receptive field of {receptive_field}, and a season of {season} and one step "
                        f"for the baselines); use fewer --backtest origins or a shorter --horizon")
    methods: dict[str, list[dict[str, np.ndarray]]] = {MODEL: [], NAIVE: [], SEASONAL_NAIVE: [], ETS: []}
    covered: list[float] = []
    ets_note = ""
    for k in range(origins):
        origin = first + k * horizon
        history, actual = values[:, :origin], values[:, origin:origin + horizon]
        scale = mase_scale(history, season)
        if forecaster is not None:
            point, paths = forecaster(history, horizon, samples=samples, temperature=temperature, seed=seed + k)
            methods[MODEL].append(errors(actual, point, scale))
            if paths is not None:
                covered.append(coverage(actual, paths))
        methods[NAIVE].append(errors(actual, naive(history, horizon), scale))
        methods[SEASONAL_NAIVE].append(errors(actual, seasonal_naive(history, horizon, season), scale))
        if not ets_note:
            try:
                methods[ETS].append(errors(actual, ets(history, horizon, season), scale))
            except ImportError:
                ets_note = ETS_MISSING
    rows = []
    for method, scores in methods.items():
        if method == MODEL and forecaster is None:
            continue
        if not scores or (method == ETS and ets_note):
            rows.append(BacktestRow(method, note=ets_note or "not run"))
            continue
        stacked = {name: np.stack([s[name] for s in scores]) for name in scores[0]}
        rows.append(BacktestRow(method, float(stacked["mae"].mean()), float(np.sqrt(stacked["mse"].mean())),
                                _mean(stacked["mase"]), float(stacked["smape"].mean()),
                                float(np.mean(covered)) if method == MODEL and covered else None))
    return Backtest(tuple(rows), horizon, origins, season, tuple(columns), source)
