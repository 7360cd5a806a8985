"""A time series from a CSV file: one column (or several, a multivariate series) chosen by name, an
optional step or date column, split in time.

    series = read_series_csv("sunspots.csv", columns="SUNACTIVITY")   # the YEAR column is found as the step
    splits = series.split(val_fraction=0.2)          # validation: the last 20%, never shuffled in
    SequenceLoader(splits.train, window=128, batch_size=16, target="continuous")
    splits.restore(model.forecast(...))              # back to the CSV's units

Values are standardised by the training part's mean and standard deviation (per column), the
scale a WaveNet with a Gaussian output learns best at. A gap (an empty cell, a short row) or text in
a number column is refused, naming the file, the row (the line of the file) and the column:
cnnzoo does not guess missing values.
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

from cnnzoo.data.sequences import SequenceSet, split_in_time
from cnnzoo.data.splits import DataError

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

    def __len__(self) -> int:
        return self.values.shape[1]

    def split(self, val_fraction: float = 0.2, *, val_steps: Optional[int] = None) -> SeriesSplits:
        """Train on the beginning, validate on the end: the last ``val_steps`` steps, or the last
        ``val_fraction`` of the series. Both parts standardised by the training part's statistics."""
        if val_steps is not None:
            if not 0 < val_steps < len(self) - 1:
                raise DataError(f"{self.source}: cannot hold out {val_steps} of {len(self)} steps")
            val_fraction = val_steps / len(self)
        train, val = split_in_time(self.values, val_fraction)
        if train.shape[1] < 2:
            raise DataError(f"{self.source}: {len(self)} steps leave {train.shape[1]} for training")
        mean = train.mean(axis=1)
        std = train.std(axis=1)
        std = np.where(std > 0, std, 1.0)  # a constant column stays as it is, shifted to 0
        name = Path(self.source).name
        return SeriesSplits(SequenceSet([(train - mean[:, None]) / std[:, None]], [name]),
                            SequenceSet([(val - mean[:, None]) / std[:, None]], [name]),
                            mean.astype(np.float32), std.astype(np.float32), self, train.shape[1])


@dataclass
class SeriesSplits:
    """A series split in time; ``boundary`` is the index of the first validation step."""

    train: SequenceSet
    val: SequenceSet
    mean: np.ndarray  # [C], in the CSV's units
    std: np.ndarray
    series: Series
    boundary: int

    def standardise(self, values):
        """CSV units -> the model's; ``values`` ``[..., C, T]`` (array or tensor)."""
        mean, std = self._stats_like(values)
        return (values - mean) / std

    def restore(self, values):
        """The model's units -> the CSV's; ``values`` ``[..., C, T]`` (array or tensor)."""
        mean, std = self._stats_like(values)
        return values * std + mean

    def _stats_like(self, values):
        mean, std = self.mean[:, None], self.std[:, None]
        if isinstance(values, torch.Tensor):
            return (torch.as_tensor(mean, dtype=values.dtype, device=values.device),
                    torch.as_tensor(std, dtype=values.dtype, device=values.device))
        return mean, std


def read_series_csv(path: Union[str, os.PathLike], columns: Union[str, Sequence[str], None] = None, *,
                    step_column: Optional[str] = "auto") -> Series:
    """The ``columns`` of a CSV file with a header row, as a series.

    ``columns``: a name or a list of names (several: a multivariate series); None takes the one
    column besides the step column, and asks to choose when there are more. ``step_column``: a
    name, ``"auto"`` (the first column when it is called date, time, step, year...) or None.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a UTF-8 text file; a CSV file with a header row is needed") from None
    rows = csv.reader(io.StringIO(text), _dialect(text))
    header = [name.strip() for name in next(rows, [])]
    if not any(header):
        raise DataError(f"{path} is empty: a CSV file with a header row is needed")
    step = _choose_step_column(path, header, step_column)
    chosen = _choose_columns(path, header, columns, step)
    index = {name: i for i, name in enumerate(header)}
    values, steps, problems, problem_count = [], [], [], 0
    for row in rows:
        if not any(cell.strip() for cell in row):  # blank lines (a trailing newline) carry no step
            continue
        line = rows.line_num
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


def _month_steps(recent: list[str], count: int) -> Optional[list[str]]:
    dates = [_parse_date(s) for s in recent]
    if len(dates) < 2 or any(d is None for d in dates):
        return None
    month_ends = all(d.day == calendar.monthrange(d.year, d.month)[1] for d in dates)
    if not month_ends and len({(d.day, d.time()) for d in dates}) != 1:
        return None
    gaps = {(b.year - a.year) * 12 + b.month - a.month for a, b in zip(dates, dates[1:])}
    if len(gaps) != 1 or (gap := gaps.pop()) < 1:
        return None
    return [_format_date(_add_months(dates[-1], gap * i, month_ends), recent[-1]) for i in range(1, count + 1)]


def _date_steps(recent: list[str], count: int) -> Optional[list[str]]:
    dates = [_parse_date(s) for s in recent]
    if len(dates) < 2 or any(d is None for d in dates):
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
