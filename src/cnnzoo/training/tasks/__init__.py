"""Tasks the trainer can train, by the task name models register with (``register_model(task=...)``)."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from cnnzoo.data.series import Series
from cnnzoo.data.splits import DataError
from cnnzoo.errors import UserError
from cnnzoo.registry import get_model_info
from cnnzoo.training.config import TrainConfig
from cnnzoo.training.tasks.audio import AudioTask
from cnnzoo.training.tasks.base import Task, TrainMetrics
from cnnzoo.training.tasks.image import ImageClassification
from cnnzoo.training.tasks.series import SeriesTask
from cnnzoo.training.tasks.windowed import WindowedTask

SERIES_SUFFIXES = (".csv", ".tsv")


class SequenceTask(WindowedTask):
    """The task WaveNet registers under (``task="sequence"``): never built itself, its :meth:`load`
    returns the :class:`AudioTask` or :class:`SeriesTask` the data calls for. The one place that
    tells them apart: a ``.csv`` (or ``.tsv``) file, or a :class:`~cnnzoo.data.series.Series` (or a
    list of them, for one global model), is a series; anything else is audio."""

    @classmethod
    def load(cls, config: TrainConfig, data=None, progress: bool = True) -> Union[AudioTask, SeriesTask]:
        """The task on ``data`` (a Series, a list of Series or an AudioSet already read) if given,
        else on ``config.data``."""
        if data is None:
            path = Path(config.data)
            if not path.exists():
                raise DataError(f"no such file or folder: {config.data!r}. {config.model} learns from sequences: "
                                f"--data takes a folder of audio files (or one) or a .csv series")
            is_series = path.is_file() and path.suffix.lower() in SERIES_SUFFIXES
        else:
            is_series = isinstance(data, Series) or (
                isinstance(data, (list, tuple)) and bool(data) and all(isinstance(s, Series) for s in data))
        if is_series:
            return SeriesTask.load(config, data, progress, transform=config.transform, season=config.season)
        series_only = [flag for flag, on in (("--transform", config.transform != "auto"),
                                             ("--season", config.season is not None),
                                             ("--id-column", config.id_column is not None),
                                             ("--wide", config.wide)) if on]
        if series_only:
            raise UserError(f"{', '.join(series_only)}: for CSV series; {config.data!r} is audio")
        return AudioTask.load(config, data, progress)


TASKS: dict[str, type[Task]] = {
    "image": ImageClassification,
    "sequence": SequenceTask,
}


def task_for_model(model_name: str) -> type[Task]:
    """The task class that trains ``model_name`` (an unknown name raises ModelError with suggestions)."""
    return TASKS[get_model_info(model_name).task]


__all__ = ["Task", "TrainMetrics", "ImageClassification", "SequenceTask", "AudioTask", "SeriesTask", "WindowedTask",
           "TASKS", "task_for_model"]
