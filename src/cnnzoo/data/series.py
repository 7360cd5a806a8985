"""A time series from a CSV file: one column (or several, a multivariate series) chosen by name, an
optional step or date column, split in time.

    series = read_series_csv("sunspots.csv", columns="SUNACTIVITY")   # the YEAR column is found as the step
    splits = series.split(val_fraction=0.2)          # validation: the last 20%, never shuffled in
    series.split(0.2, transform=parse_transform("diff"))   # ...of the first differences
    WindowLoader(splits.train, window=128, batch_size=16, target="continuous")
    splits.restore(model.forecast(...))              # back to the CSV's units

Values go through a transform for level and trend first when one is given (a log, first or seasonal
differences: :mod:`cnnzoo.data.series_transforms`), then are standardised by the training part's
mean and standard deviation (per column), the scale a WaveNet with a Gaussian output learns best at.
A gap (an empty cell, a short row) or text in a number column is refused, naming the file, the row
(the line of the file) and the column: cnnzoo does not guess missing values.

Several series in one file (:func:`read_panel_csv`): long (an id, a time and a value column) or
wide (a time column and one column per series), one :class:`Series` each; there a gap in the time
column or a step out of order is refused too, with its row. :func:`split_panel` splits each on its
own (transformed and standardised by its own training part), for one global model.
"""
from __future__ import annotations

import calendar
import csv
import difflib
import io
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from cnnzoo.data.series_transforms import SeriesTransform
from cnnzoo.data.splits import DataError
from cnnzoo.data.windows import SignalSet, split_in_time

# A first column with one of these names (any case) is the step or date column when none is named.
STEP_COLUMN_NAMES = frozenset({"date", "time", "timestamp", "datetime", "step", "t", "ds", "year", "month", "day",
                               "week", "period", "index"})
MAX_PROBLEMS = 5  # bad cells named in the error; the count covers them all


@dataclass
class Series:
    """``values`` float32 ``[C, T]`` (one row per chosen column), the step column's text if any."""

    values: np.ndarray
    columns: list[str]
    steps: Optional[list[str]]
    step_column: Optional[str]
    source: str
    name: str = ""  # which series of a file of several (its id, or its column)
    lines: Optional[list[int]] = None  # the file's line of every step, to name rows in errors

    def __len__(self) -> int:
        return self.values.shape[1]

    @property
    def where(self) -> str:
        """The file, the series (of several) and its rows, as an error names them."""
        rows = f", rows {self.lines[0]} to {self.lines[-1]}" if self.lines else ""
        return f"{self.source}: series {self.name!r}{rows}" if self.name else self.source

    def split(self, val_fraction: float = 0.2, *, val_steps: Optional[int] = None,
              transform: Optional[SeriesTransform] = None) -> SeriesSplits:
        """Train on the beginning, validate on the end: the last ``val_steps`` steps, or the last
        ``val_fraction`` of the series. Both parts go through ``transform`` (default: none; the series
        task passes :func:`~cnnzoo.data.series_transforms.choose_transform`'s choice) and are then
        standardised by the training part's statistics."""
        if val_steps is not None:
            if not 0 < val_steps < len(self) - 1:
                raise DataError(f"{self.where}: cannot hold out {val_steps} of {len(self)} steps")
            val_fraction = val_steps / len(self)
        transform = transform or SeriesTransform()
        train, _ = split_in_time(self.values, val_fraction)
        boundary = train.shape[1]
        changed = transform.apply(self.values).astype(np.float32)  # [C, T - lag]: the first lag steps have no past
        cut = boundary - transform.lag
        if cut < 2:
            raise DataError(f"{self.where}: {len(self)} steps leave {cut} for training after the "
                            f"{transform.name} transform")
        train, val = changed[:, :cut], changed[:, cut:]
        mean = train.mean(axis=1)
        std = train.std(axis=1)
        std = np.where(std > 0, std, 1.0)  # a constant column stays as it is, shifted to 0
        name = self.name or Path(self.source).name
        return SeriesSplits(SignalSet([(train - mean[:, None]) / std[:, None]], [name]),
                            SignalSet([(val - mean[:, None]) / std[:, None]], [name]),
                            mean.astype(np.float32), std.astype(np.float32), self, boundary, transform)


@dataclass
class SeriesSplits:
    """A series split in time; ``boundary`` is the index of the first validation step (in the
    series as read); ``train`` and ``val`` are transformed (``transform``) and standardised."""

    train: SignalSet
    val: SignalSet
    mean: np.ndarray  # [C], in the transformed series' units
    std: np.ndarray
    series: Series
    boundary: int
    transform: SeriesTransform = SeriesTransform()

    def standardise(self, values):
        """Transformed units -> the model's; ``values`` ``[..., C, T]`` (array or tensor)."""
        mean, std = self._stats_like(values)
        return (values - mean) / std

    def restore(self, values):
        """The model's units -> the transformed series' (the CSV's, with no transform); ``values``
        ``[..., C, T]`` (array or tensor)."""
        mean, std = self._stats_like(values)
        return values * std + mean

    def _stats_like(self, values):
        mean, std = self.mean[:, None], self.std[:, None]
        if isinstance(values, torch.Tensor):
            return (torch.as_tensor(mean, dtype=values.dtype, device=values.device),
                    torch.as_tensor(std, dtype=values.dtype, device=values.device))
        return mean, std


def split_panel(series: Sequence[Series], val_fraction: float = 0.2, *,
                transform: Optional[SeriesTransform] = None) -> list[SeriesSplits]:
    """Several series, each split in time and standardised by its own training part (:meth:`Series.split`,
    the same ``transform`` for all): what one global model trains on, its windows drawn from every one."""
    if not series:
        raise DataError("no series to split")
    names = [s.name for s in series]
    if len(set(names)) != len(names):
        raise DataError(f"{series[0].source}: two series share a name ({', '.join(names)})")
    return [s.split(val_fraction, transform=transform) for s in series]


def read_series_csv(path: Union[str, os.PathLike], columns: Union[str, Sequence[str], None] = None, *,
                    step_column: Optional[str] = "auto") -> Series:
    """The ``columns`` of a CSV file with a header row, as a series.

    ``columns``: a name or a list of names (several: a multivariate series); None takes the one
    column besides the step column, and asks to choose when there are more. ``step_column``: a
    name, ``"auto"`` (the first column when it is called date, time, step, year...) or None.
    """
    path = Path(path)
    header, rows = _rows(path)
    step = _choose_step_column(path, header, step_column)
    chosen = _choose_columns(path, header, columns, step)
    index = {name: i for i, name in enumerate(header)}
    values: list[list[float]] = []
    steps: list[str] = []
    problems: list[str] = []
    problem_count = 0
    for line, row in rows:  # blank lines (a trailing newline) carry no step: _rows leaves them out
        parsed = []
        for name in chosen:
            cell = row[index[name]].strip() if index[name] < len(row) else ""
            value, problem = _number(cell)
            if problem:
                problem_count += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append(f"row {line}, column {name!r}: {problem}")
            parsed.append(value)
        values.append(parsed)
        if step is not None:
            steps.append(row[index[step]].strip() if index[step] < len(row) else "")
    if problems:
        more = f" (and {problem_count - len(problems)} more)" if problem_count > len(problems) else ""
        raise DataError(f"{path}: {'; '.join(problems)}{more}. Every value of a number column must be a finite "
                        f"number: fill gaps or remove those rows (cnnzoo does not guess missing values).")
    if len(values) < 2:
        raise DataError(f"{path} has {len(values)} data row{'s' if len(values) != 1 else ''}: a series needs more")
    return Series(np.asarray(values, dtype=np.float32).T.copy(), chosen, steps if step is not None else None,
                  step, str(path))


def read_panel_csv(path: Union[str, os.PathLike], *, id_column: Optional[str] = None,
                   value_column: Optional[str] = None, columns: Optional[Sequence[str]] = None,
                   step_column: Optional[str] = "auto") -> list[Series]:
    """Several series in one CSV, each a one-column :class:`Series` named by its id or column (what a
    global model trains on, one forecast per series).

    Long (``id_column`` given): one row per series and step, an id column, a step column and a value
    column (``value_column``, or the one column left). Wide (no ``id_column``): the step column and
    one column per series (``columns``, default every other column). A series' steps must be regular
    and in order: a gap (a missing month, say) or a step out of order is refused, naming its row.
    """
    path = Path(path)
    header, rows = _rows(path)
    step = _choose_step_column(path, header, step_column)
    if id_column is None:
        chosen = list(columns) if columns else [name for name in header if name != step]
        wide = read_series_csv(path, chosen, step_column=step)
        if wide.steps is not None:
            _check_steps(path, wide.steps, list(range(2, len(wide) + 2)), step or "")
        lines = [line for line, _ in rows]
        return [Series(wide.values[i:i + 1].copy(), [column], wide.steps, step, str(path), column, lines)
                for i, column in enumerate(chosen)]
    if id_column not in header:
        raise DataError(f"{path} has no id column {id_column!r}{_suggest(id_column, header)}; its columns: "
                        f"{', '.join(header)}")
    if step_column == "auto" and (step is None or step == id_column):  # the id usually comes first
        step = next((name for name in header if name.lower() in STEP_COLUMN_NAMES and name != id_column), None)
    if step is None or step == id_column:
        raise DataError(f"{path}: a long file needs a time column besides the id column {id_column!r}; name it "
                        f"with the step column option")
    if value_column is not None:
        rest = _choose_columns(path, header, value_column, step)
    else:
        rest = [name for name in header if name not in (id_column, step)]
    if len(rest) != 1:
        raise DataError(f"{path} has {len(rest)} value columns besides {id_column!r} and {step!r} "
                        f"({', '.join(rest) or 'none'}): name the value column")
    value_name = rest[0]
    index = {name: i for i, name in enumerate(header)}
    groups: dict[str, tuple[list[float], list[str], list[int]]] = {}
    problems: list[str] = []
    for line, row in rows:
        number, problem = _number(_cell(row, index[value_name]))
        if problem:
            problems.append(f"row {line}, column {value_name!r}: {problem}")
        values, steps, lines = groups.setdefault(_cell(row, index[id_column]), ([], [], []))
        values.append(number)
        steps.append(_cell(row, index[step]))
        lines.append(line)
    if problems:
        more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
        raise DataError(f"{path}: {'; '.join(problems[:MAX_PROBLEMS])}{more}. Every value must be a finite number: "
                        f"fill gaps or remove those rows (cnnzoo does not guess missing values).")
    series = []
    for name, (values, steps, lines) in groups.items():
        _check_steps(path, steps, lines, step, f"series {name!r}: ")
        series.append(Series(np.asarray([values], dtype=np.float32), [value_name], steps, step, str(path), name,
                             lines))
    return series


def _cell(row: list[str], i: int) -> str:
    return row[i].strip() if i < len(row) else ""  # a short row: its missing cells are empty


def _rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-blank rows with their line numbers."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a UTF-8 text file; a CSV file with a header row is needed") from None
    reader = csv.reader(io.StringIO(text), _dialect(text))
    header = [name.strip() for name in next(reader, [])]
    if not any(header):
        raise DataError(f"{path} is empty: a CSV file with a header row is needed")
    return header, [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]


def _positions(steps: Sequence[str]) -> Optional[np.ndarray]:
    """The steps as numbers on one scale (months for dates on the same day of the month, else days;
    numbers as they are), or None for text."""
    try:
        return np.asarray([float(s) for s in steps])
    except ValueError:
        pass
    dates = [_parse_date(s) for s in steps]
    if any(d is None for d in dates):
        return None
    known = [d for d in dates if d is not None]
    if len({(d.day, d.time()) for d in known}) == 1 or all(
            d.day == calendar.monthrange(d.year, d.month)[1] for d in known):
        return np.asarray([d.year * 12 + d.month for d in known], dtype=np.float64)
    return np.asarray([d.timestamp() / 86400 for d in known])


def _check_steps(path: Path, steps: Sequence[str], lines: Sequence[int], column: str, what: str = "") -> None:
    """Refuse a step that is not one regular step after the one before (a gap, a repeat, disorder)."""
    positions = _positions(steps)
    if positions is None or len(positions) < 3:
        return
    gaps = np.diff(positions)
    values, counts = np.unique(np.round(gaps, 6), return_counts=True)
    usual = float(values[counts == counts.max()].min())  # the usual step; of two as common, the smaller
    for i, gap in enumerate(gaps):
        if usual <= 0 or not math.isclose(gap, usual, rel_tol=0.01, abs_tol=1e-9):
            kind = ("a gap in the time column" if gap > usual else "a step out of order or repeated in the time column")
            raise DataError(f"{path}: {what}row {lines[i + 1]}, column {column!r}: {kind} ({steps[i]!r} then "
                            f"{steps[i + 1]!r}, where the others step by {usual:g}); fill the missing steps or "
                            f"sort the rows (cnnzoo does not guess missing values)")


def continue_steps(steps: Sequence[str], count: int) -> list[str]:
    """The ``count`` step labels after ``steps`` (a step column's text), in the same form: whole
    numbers and decimals go on by their last difference (``1700.0, 1701.0`` -> ``1702.0``); dates
    (ISO 8601, or ``YYYY-MM``) by whole months when the column steps by months (month ends stay
    month ends), else by the last time difference; any other text as ``last+1``, ``last+2``...
    """
    if count < 1:
        return []
    if not steps:
        return [str(i) for i in range(count)]
    last = steps[-1]
    for step in (_number_steps, _month_steps, _date_steps):
        labels = step(list(steps[-3:]), count)
        if labels is not None:
            return labels
    return [f"{last}+{i}" for i in range(1, count + 1)]


def _number_steps(recent: list[str], count: int) -> Optional[list[str]]:
    try:
        values = [float(s) for s in recent]
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in values):
        return None
    decimals = max(len(s.partition(".")[2]) if "." in s and "e" not in s.lower() else 0 for s in recent)
    delta = values[-1] - values[-2] if len(values) > 1 else 1.0
    if delta == 0:
        return None
    return [f"{values[-1] + delta * i:.{decimals}f}" for i in range(1, count + 1)]


_YEAR_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def _parse_date(text: str) -> Optional[datetime]:
    match = _YEAR_MONTH.match(text)
    if match:
        return datetime(int(match[1]), int(match[2]), 1)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _format_date(value: datetime, like: str) -> str:
    if _YEAR_MONTH.match(like):
        return f"{value.year:04d}-{value.month:02d}"
    if len(like) == 10:  # a date without a time
        return value.date().isoformat()
    return value.isoformat(sep="T" if "T" in like else " ")


def _add_months(value: datetime, months: int, month_end: bool) -> datetime:
    total = value.year * 12 + value.month - 1 + months
    year, month = divmod(total, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return value.replace(year=year, month=month + 1, day=last_day if month_end else min(value.day, last_day))


def _dates(recent: list[str]) -> Optional[list[datetime]]:
    """The steps as dates when there are two or more and every one is a date, else None."""
    dates = [date for date in map(_parse_date, recent) if date is not None]
    return dates if len(recent) >= 2 and len(dates) == len(recent) else None


def _month_steps(recent: list[str], count: int) -> Optional[list[str]]:
    dates = _dates(recent)
    if dates is None:
        return None
    month_ends = all(d.day == calendar.monthrange(d.year, d.month)[1] for d in dates)
    if not month_ends and len({(d.day, d.time()) for d in dates}) != 1:
        return None
    gaps = {(b.year - a.year) * 12 + b.month - a.month for a, b in zip(dates, dates[1:])}
    if len(gaps) != 1 or (gap := gaps.pop()) < 1:
        return None
    return [_format_date(_add_months(dates[-1], gap * i, month_ends), recent[-1]) for i in range(1, count + 1)]


def _date_steps(recent: list[str], count: int) -> Optional[list[str]]:
    dates = _dates(recent)
    if dates is None:
        return None
    delta: timedelta = dates[-1] - dates[-2]
    if delta <= timedelta(0):
        return None
    return [_format_date(dates[-1] + delta * i, recent[-1]) for i in range(1, count + 1)]


def _dialect(text: str):
    try:
        return csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:  # one column has no delimiter to find
        return csv.excel


def _choose_step_column(path: Path, header: list[str], step_column: Optional[str]) -> Optional[str]:
    if step_column == "auto":
        return header[0] if header[0].lower() in STEP_COLUMN_NAMES else None
    if step_column is not None and step_column not in header:
        raise DataError(f"{path} has no column {step_column!r}{_suggest(step_column, header)}; "
                        f"its columns: {', '.join(header)}")
    return step_column


def _choose_columns(path: Path, header: list[str], columns, step: Optional[str]) -> list[str]:
    if columns is None:
        candidates = [name for name in header if name != step]
        if len(candidates) != 1:
            raise DataError(f"{path} has {len(candidates)} columns besides the step column "
                            f"({', '.join(candidates) or 'none'}): choose the series by name (several make a "
                            f"multivariate series)")
        return candidates
    chosen = [columns] if isinstance(columns, str) else list(columns)
    for name in chosen:
        if name not in header:
            raise DataError(f"{path} has no column {name!r}{_suggest(name, header)}; its columns: {', '.join(header)}")
    if len(set(chosen)) != len(chosen):
        raise DataError(f"a column is chosen twice: {', '.join(chosen)}")
    return chosen


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=2, cutoff=0.5)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def _number(cell: str) -> tuple[float, Optional[str]]:
    """(the value, None) or (nan, what is wrong with the cell)."""
    if not cell:
        return math.nan, "empty (a gap in the series)"
    try:
        value = float(cell)
    except ValueError:
        return math.nan, f"{cell!r} is not a number"
    if not math.isfinite(value):
        return math.nan, f"{cell!r} is not a finite number (a gap in the series)"
    return value, None
