"""WaveNet on a CSV time series: the chosen ``--columns`` as a Gaussian per value and step, after
a transform for level and trend (:mod:`cnnzoo.data.series_transforms`: a log, first or seasonal
differences, a per-window level; the default chosen from the training part) and standardised by the
training part's mean and standard deviation, which travel in the checkpoint with the transform and
the season. The windows, defaults and validation are those of every windowed task
(:mod:`cnnzoo.training.tasks.windowed`); early stopping is on by default (``PATIENCE``). At the end
of training the best weights are backtested on the held-out end against the naive, seasonal-naive
and ETS forecasts (:mod:`cnnzoo.training.backtest`), printed and written beside the checkpoints.

**Several series, one global model** (``--id-column`` for a long file, ``--wide`` for one column
per series): the model stays univariate (one channel) and the training windows of every series are
pooled, as GluonTS' global models (DeepAR, its WaveNet) train. Each series is split in time and
transformed and standardised by its own training part, so series of any scale look alike to the
network and one set of weights learns the dynamics they share; the transform is one for all (a step
taken when every series calls for it), since the network learns one kind of input. We chose this
over a multivariate model (one channel per series) because that needs the series aligned in time
and of one length, cannot forecast one series without the others, and grows the input layer with
the number of series; a pooled univariate model has none of these limits and is what the
forecasting literature means by a global model. The per-series statistics and tails go in the
checkpoint (:class:`~cnnzoo.checkpoint.SeriesMember`), the backtest is run per series and
summarised by the mean MASE (:class:`~cnnzoo.training.backtest.PanelBacktest`), and a series too
short for the model's receptive field plus its held-out end is refused by name and rows. The
training MAE of a global model is in standard deviations of each series (its units differ from
series to series).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from cnnzoo.checkpoint import SeriesFields, SeriesMember
from cnnzoo.data.series import Series, SeriesSplits, read_panel_csv, read_series_csv, split_panel
from cnnzoo.data.series_transforms import SeriesTransform, choose_transform, detect_season, parse_transform, relevel
from cnnzoo.data.windows import SignalSet
from cnnzoo.errors import UserError
from cnnzoo.training.backtest import Backtest, PanelBacktest, run_backtest
from cnnzoo.training.config import TrainConfig
from cnnzoo.training.generation import SeriesForecaster
from cnnzoo.training.tasks.windowed import CONDITIONS_NEED_AUDIO, WindowedTask, as_wavenet, default_window

# Early stopping on by default: a series is small, and a run of the default epochs spent most of
# them over-fitting it (issue 25: validation loss best at epoch 25 of 300, 150 times worse at the
# end). The loop keeps the best checkpoint; this many epochs without a better one end the run.
PATIENCE = 20
BACKTEST_FILE = "backtest.csv"  # beside the checkpoints, with backtest.json


class SeriesTask(WindowedTask):
    """WaveNet learning the next values of a series; its readable metric is the MAE in the CSV's units."""

    fields_type = SeriesFields
    metrics = ("loss", "mae")
    metric_limits: dict[str, tuple[float, float]] = {}

    def __init__(self, splits: Union[SeriesSplits, Sequence[SeriesSplits]], val_fraction: float, *,
                 id_column: Optional[str] = None):
        """``splits``: one series' splits, or a sequence of them (several series, one global model,
        even when the sequence holds one); ``id_column``: the long file's id column they came from."""
        self.panel = not isinstance(splits, SeriesSplits)
        self.parts: list[SeriesSplits] = list(splits) if not isinstance(splits, SeriesSplits) else [splits]
        if not self.parts:
            raise UserError("no series to train on")
        self.splits = self.parts[0]
        if self.panel:
            names = [p.series.name for p in self.parts]
            train = SignalSet([p.train.signals[0] for p in self.parts], names)
            val = SignalSet([p.val.signals[0] for p in self.parts], names)
        else:
            train, val = self.splits.train, self.splits.val
        super().__init__(train, val, self.splits.series.source, val_fraction)
        self.id_column = id_column
        # per column, to give the MAE in the (transformed) series' units; a global model's series
        # differ in units, so its MAE stays in standard deviations
        self.std = torch.as_tensor(self.splits.std if not self.panel else np.ones(1), dtype=torch.float64)
        self.backtest: Optional[Union[Backtest, PanelBacktest]] = None

    @classmethod
    def load(cls, config: TrainConfig, data: Union[Series, Sequence[Series], None] = None, progress: bool = True, *,
             transform: str = "auto", season: Optional[int] = None) -> SeriesTask:
        """The task on ``data`` (a series already read, or a list of several for one global model)
        if given, else on the CSV at ``config.data`` (several series with ``config.id_column`` or
        ``config.wide``). ``transform``: a name (:func:`~cnnzoo.data.series_transforms.parse_transform`)
        or "auto" (the default, chosen from the training part); ``season``: the period (default: from
        the step column)."""
        _refuse_conditions(config)
        if config.sample_rate is not None:
            raise UserError("--sample-rate is for audio; a CSV series is modelled step by step")
        if data is None:
            data = read_series_data(config)
        if isinstance(data, Series):
            chosen = series_transform(data, config.val_fraction, transform, season)
            return cls(data.split(config.val_fraction, transform=chosen), config.val_fraction)
        series = list(data)
        chosen = series_transform(series, config.val_fraction, transform, season)
        return cls(split_panel(series, config.val_fraction, transform=chosen), config.val_fraction,
                   id_column=config.id_column)

    @property
    def transform(self) -> SeriesTransform:
        return self.splits.transform

    @property
    def columns(self) -> list[str]:
        """The file's value column(s): the multivariate series' columns, or a global model's series'
        (a wide file's columns, a long file's one value column)."""
        if self.panel and self.id_column is None:
            return [p.series.name for p in self.parts]
        return list(self.splits.series.columns)

    @property
    def names(self) -> list[str]:
        """The series a global model learns (one name per series); one series: its columns."""
        return [p.series.name for p in self.parts] if self.panel else self.columns

    def summary(self) -> str:
        if self.panel:
            lengths = [len(p.series) for p in self.parts]
            return (f"{self.source}: {len(self.parts)} series ({', '.join(self.names[:6])}"
                    f"{', ...' if len(self.parts) > 6 else ''}) of {min(lengths)} to {max(lengths)} steps, one global "
                    f"model; each trains on its first {1 - self.val_fraction:.0%} and validates on the rest")
        series, boundary = self.splits.series, self.splits.boundary
        steps = f", steps {series.step_column!r} {series.steps[0]} to {series.steps[-1]}" if series.steps else ""
        return (f"{series.source}: {len(series)} steps of {', '.join(series.columns)}{steps}; training the first "
                f"{boundary}, validation the last {len(series) - boundary}")

    def imposed_args(self) -> dict[str, Any]:
        return {"in_channels": self.train.channels}

    def describe_data(self, window: int) -> tuple[str, str]:
        transform = self.transform
        why = f": {transform.reason}" if transform.reason else ""
        season = f", season {transform.season}" if transform.season > 1 and "season" not in transform.reason else ""
        what = (f"{len(self.parts)} series of {', '.join(self.columns)}, one global model" if self.panel
                else f"series {', '.join(self.columns)}")
        scaled = "standardised per series; MAE in standard deviations" if self.panel else "standardised"
        return (f"{what} (transform {transform.name}{why}{season}; {scaled})",
                f"{window} steps ({window / self.receptive_field:.1f} receptive fields)")

    def metric_sum(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Absolute errors of the predicted mean in the series' units (averaged over columns)."""
        mean = outputs[:, :y.shape[1]].double()
        std = self.std.to(outputs.device)
        return ((mean - y).abs() * std[:, None]).sum() / y.shape[1]

    def resolve(self, config: TrainConfig, model: nn.Module, device_type: str) -> TrainConfig:
        if self.panel:
            receptive_field = as_wavenet(model).receptive_field
            if config.window is None:  # every series must give windows: the shortest decides
                shortest = min(s.shape[1] for s in self.train.signals)
                config = dataclasses.replace(config, window=default_window(receptive_field, shortest))
            self._check_lengths(receptive_field, int(config.window or 0))
        resolved = super().resolve(config, model, device_type)
        return dataclasses.replace(resolved, patience=config.patience if config.patience is not None else PATIENCE)

    def _check_lengths(self, receptive_field: int, window: int) -> None:
        """Refuse, by name and rows, a series whose training part cannot give a window, or is shorter
        than the receptive field the forecast of its held-out end reads."""
        lag, season = self.transform.lag, self.transform.season
        need = max(receptive_field, window + 1 + lag, season + 1)
        for part in self.parts:
            series, boundary = part.series, part.boundary
            if boundary < need:
                held = len(series) - boundary
                raise UserError(
                    f"{series.where} has {len(series)} steps, {boundary} before its held-out end of {held}: one "
                    f"global model with a receptive field of {receptive_field} steps and windows of {window} needs "
                    f"{need} before it (with the {lag} the {self.transform.name} transform consumes), "
                    f"{need + held} in all; drop that series, or use a shorter --window or a smaller model")

    def prepare(self, x: torch.Tensor, y: torch.Tensor, known: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows relative to their level (a ``window-mean`` or ``window-last`` transform), the level
        taken from the first ``known`` inputs, the past a forecast from there would have."""
        x, level = relevel(x, self.transform.window_level, known)
        return x, y - level

    def forecaster(self, model: nn.Module, part: Optional[SeriesSplits] = None) -> SeriesForecaster:
        """The model with the transform and standardisation of ``part`` (one series of several; default the first)."""
        network = as_wavenet(model)
        part = part or self.splits
        return SeriesForecaster(network, self.transform, part.mean.astype(np.float64), part.std.astype(np.float64),
                                next(network.parameters()).device)

    def test_metrics(self, model: nn.Module, config: TrainConfig,
                     device: torch.device) -> Optional[tuple[dict[str, float], int]]:
        """The loop's end-of-training call with the best weights: the backtest on the held-out end
        (one origin, the validation part as the horizon), printed with its verdict and written to the
        run folder (``backtest.csv``, ``.json``). A series has no test split: returns None."""
        self.backtest = self.run_backtest(model, config.seed)
        if config.out_dir is not None:
            self.backtest.save(Path(config.out_dir) / BACKTEST_FILE)
        # printed even under --quiet: a forecast worse than repeating the last season must not pass silently
        print(self.backtest.table())
        print(self.backtest.verdict())
        return None

    def run_backtest(self, model: nn.Module, seed: int = 0) -> Union[Backtest, PanelBacktest]:
        """``model`` forecasting the validation part from the training part, next to the baselines
        (several series: each its own, and the mean MASE over them)."""
        model.eval()
        scores = []
        for part in self.parts:
            series, boundary = part.series, part.boundary
            scores.append(run_backtest(series.values, self.forecaster(model, part), horizon=len(series) - boundary,
                                       origins=1, season=self.transform.season,
                                       columns=[series.name] if self.panel else self.columns, seed=seed,
                                       source=Path(series.source).name))
        return PanelBacktest(tuple(scores)) if self.panel else scores[0]

    def checkpoint_fields(self, config: TrainConfig) -> SeriesFields:
        """What ``forecast`` needs besides the model: the columns, step column, transform, season,
        standardisation and the series' last receptive field of values (and the steps the transform's
        differences consume)."""
        windowing, series = self.bound, self.splits.series
        keep = windowing.receptive_field + self.transform.lag
        if self.panel:
            members = tuple(SeriesMember(p.series.name, float(p.mean[0]), float(p.std[0]), len(p.series),
                                         int(p.boundary), tuple(p.series.steps[-3:]) if p.series.steps else None,
                                         tuple(float(v) for v in p.series.values[0, -keep:]))
                            for p in self.parts)
            return SeriesFields(receptive_field=windowing.receptive_field, window=windowing.window,
                                validation_context=windowing.context, train_samples=self.num_train,
                                columns=tuple(self.columns), step_column=series.step_column, mean=(), std=(),
                                length=sum(m.length for m in members), boundary=sum(m.boundary for m in members),
                                last_steps=None, tail=(), transform=self.transform.name,
                                season=self.transform.season, members=members, id_column=self.id_column)
        tail = series.values[:, -keep:]
        return SeriesFields(receptive_field=windowing.receptive_field, window=windowing.window,
                            validation_context=windowing.context, train_samples=self.num_train,
                            columns=tuple(self.columns), step_column=series.step_column,
                            mean=tuple(float(v) for v in self.splits.mean),
                            std=tuple(float(v) for v in self.splits.std),
                            length=len(series), boundary=int(self.splits.boundary),
                            last_steps=tuple(series.steps[-3:]) if series.steps else None,
                            tail=tuple(tuple(row) for row in tail.tolist()),
                            transform=self.transform.name, season=self.transform.season)

    def check_fields(self, fields: SeriesFields) -> None:
        if list(fields.columns) != self.columns:
            raise UserError(f"cannot resume: the run modelled columns {list(fields.columns)}, now {self.columns}")
        before = [m.name for m in fields.members] if fields.members else None
        if before != (self.names if self.panel else None):
            raise UserError(f"cannot resume: the run learned the series {before or 'of one file'}, now "
                            f"{self.names if self.panel else 'one series'}")
        if (fields.transform, fields.season) != (self.transform.name, self.transform.season):
            raise UserError(f"cannot resume: the run was trained with the transform {fields.transform!r} (season "
                            f"{fields.season}), now {self.transform.name!r} (season {self.transform.season}); "
                            f"give the same --transform and --season")


def read_series_data(config: TrainConfig) -> Union[Series, list[Series]]:
    """The CSV at ``config.data``: one series (``--columns``), or several for one global model
    (``--id-column``: a long file, ``--columns`` its value column; ``--wide``: a series per column)."""
    path = Path(config.data)
    if config.id_column is not None and config.wide:
        raise UserError("--id-column reads a long file and --wide a file of one column per series: give one")
    if config.id_column is not None:
        value = _columns(config.columns)
        if isinstance(value, list):
            raise UserError(f"--columns {config.columns!r}: a long file (--id-column) has one value column; name one")
        return read_panel_csv(path, id_column=config.id_column, value_column=value)
    if config.wide:
        names = _columns(config.columns)
        return read_panel_csv(path, columns=[names] if isinstance(names, str) else names)
    return read_series_csv(path, _columns(config.columns))


def series_transform(series: Union[Series, Sequence[Series]], val_fraction: float, transform: str = "auto",
                     season: Optional[int] = None) -> SeriesTransform:
    """The transform a series (or several, for one global model) is trained with: ``transform`` by
    name, or with "auto" the default :func:`~cnnzoo.data.series_transforms.choose_transform` picks
    from the training parts (the first ``1 - val_fraction`` of each); ``season`` given (2 or more),
    or detected from the step column."""
    several = [series] if isinstance(series, Series) else list(series)
    if season is not None and (not isinstance(season, int) or isinstance(season, bool) or season < 2):
        raise UserError(f"--season must be a whole number of steps, 2 or more (leave it out for a series "
                        f"without a season); got {season!r}")
    period = season if season is not None else detect_season(several[0].steps)
    if transform != "auto":
        return parse_transform(transform, period)
    rows: list[np.ndarray] = []
    for s in several:
        boundary = len(s) - int(round(len(s) * val_fraction))
        rows.extend(s.values[:, :boundary])
    return choose_transform(rows, period)


def _refuse_conditions(config: TrainConfig) -> None:
    if config.condition_on_folders:
        raise UserError(CONDITIONS_NEED_AUDIO)


def _columns(text: Optional[str]) -> Union[str, list[str], None]:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    return names[0] if len(names) == 1 else names
