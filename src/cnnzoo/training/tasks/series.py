"""WaveNet on a CSV time series: the chosen ``--columns`` as a Gaussian per value and step, after
a transform for level and trend (:mod:`cnnzoo.data.series_transforms`: a log, first or seasonal
differences, a per-window level; the default chosen from the training part) and standardised by the
training part's mean and standard deviation, which travel in the checkpoint with the transform and
the season. The windows, defaults and validation are those of every windowed task
(:mod:`cnnzoo.training.tasks.windowed`); early stopping is on by default (``PATIENCE``). At the end
of training the best weights are backtested on the held-out end against the naive, seasonal-naive
and ETS forecasts (:mod:`cnnzoo.training.backtest`), printed and written beside the checkpoints.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from cnnzoo.checkpoint import SeriesFields
from cnnzoo.data.series import Series, SeriesSplits, read_series_csv
from cnnzoo.data.series_transforms import SeriesTransform, choose_transform, detect_season, parse_transform, relevel
from cnnzoo.errors import UserError
from cnnzoo.training.backtest import Backtest, run_backtest
from cnnzoo.training.config import TrainConfig
from cnnzoo.training.generation import SeriesForecaster
from cnnzoo.training.tasks.windowed import CONDITIONS_NEED_AUDIO, WindowedTask, as_wavenet

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

    def __init__(self, splits: SeriesSplits, val_fraction: float):
        super().__init__(splits.train, splits.val, splits.series.source, val_fraction)
        self.splits = splits
        # per column, to give the MAE in the (transformed) series' units
        self.std = torch.as_tensor(splits.std, dtype=torch.float64)
        self.backtest: Optional[Backtest] = None

    @classmethod
    def load(cls, config: TrainConfig, data: Optional[Series] = None, progress: bool = True, *,
             transform: str = "auto", season: Optional[int] = None) -> SeriesTask:
        """The task on ``data`` (a series already read) if given, else on the CSV at ``config.data``.
        ``transform``: a name (:func:`~cnnzoo.data.series_transforms.parse_transform`) or "auto" (the
        default, chosen from the training part); ``season``: the period (default: from the step column)."""
        if data is None:
            _refuse_conditions(config)
            data = read_series_csv(Path(config.data), _columns(config.columns))
        if config.sample_rate is not None:
            raise UserError("--sample-rate is for audio; a CSV series is modelled step by step")
        _refuse_conditions(config)
        return cls(data.split(config.val_fraction, transform=series_transform(data, config.val_fraction, transform,
                                                                              season)),
                   config.val_fraction)

    @property
    def transform(self) -> SeriesTransform:
        return self.splits.transform

    @property
    def columns(self) -> list[str]:
        return list(self.splits.series.columns)

    def summary(self) -> str:
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
        return (f"series {', '.join(self.columns)} (transform {transform.name}{why}{season}; standardised)",
                f"{window} steps ({window / self.receptive_field:.1f} receptive fields)")

    def metric_sum(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Absolute errors of the predicted mean in the series' units (averaged over columns)."""
        mean = outputs[:, :y.shape[1]].double()
        std = self.std.to(outputs.device)
        return ((mean - y).abs() * std[:, None]).sum() / y.shape[1]

    def resolve(self, config: TrainConfig, model: nn.Module, device_type: str) -> TrainConfig:
        resolved = super().resolve(config, model, device_type)
        return dataclasses.replace(resolved, patience=config.patience if config.patience is not None else PATIENCE)

    def prepare(self, x: torch.Tensor, y: torch.Tensor, known: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows relative to their level (a ``window-mean`` or ``window-last`` transform), the level
        taken from the first ``known`` inputs, the past a forecast from there would have."""
        x, level = relevel(x, self.transform.window_level, known)
        return x, y - level

    def forecaster(self, model: nn.Module) -> SeriesForecaster:
        network = as_wavenet(model)
        return SeriesForecaster(network, self.transform, self.splits.mean.astype(np.float64),
                                self.splits.std.astype(np.float64), next(network.parameters()).device)

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

    def run_backtest(self, model: nn.Module, seed: int = 0) -> Backtest:
        """``model`` forecasting the validation part from the training part, next to the baselines."""
        series, boundary = self.splits.series, self.splits.boundary
        model.eval()
        return run_backtest(series.values, self.forecaster(model), horizon=len(series) - boundary, origins=1,
                            season=self.transform.season, columns=self.columns, seed=seed,
                            source=Path(series.source).name)

    def checkpoint_fields(self, config: TrainConfig) -> SeriesFields:
        """What ``forecast`` needs besides the model: the columns, step column, transform, season,
        standardisation and the series' last receptive field of values (and the steps the transform's
        differences consume)."""
        windowing, series = self.bound, self.splits.series
        tail = series.values[:, -(windowing.receptive_field + self.transform.lag):]
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
        if (fields.transform, fields.season) != (self.transform.name, self.transform.season):
            raise UserError(f"cannot resume: the run was trained with the transform {fields.transform!r} (season "
                            f"{fields.season}), now {self.transform.name!r} (season {self.transform.season}); "
                            f"give the same --transform and --season")


def series_transform(series: Series, val_fraction: float, transform: str = "auto",
                     season: Optional[int] = None) -> SeriesTransform:
    """The transform a series is trained with: ``transform`` by name, or with "auto" the default
    :func:`~cnnzoo.data.series_transforms.choose_transform` picks from the training part (the first
    ``1 - val_fraction`` of it); ``season`` given, or detected from the step column."""
    period = season if season is not None else detect_season(series.steps)
    if period < 1:
        raise UserError(f"--season must be 1 (none) or more steps, got {period}")
    if transform != "auto":
        return parse_transform(transform, period)
    boundary = len(series) - int(round(len(series) * val_fraction))
    return choose_transform(series.values[:, :boundary], period)


def _refuse_conditions(config: TrainConfig) -> None:
    if config.condition_on_folders:
        raise UserError(CONDITIONS_NEED_AUDIO)


def _columns(text: Optional[str]) -> Union[str, list[str], None]:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    return names[0] if len(names) == 1 else names
