"""Run loggers: each epoch's metrics, and the run's options and files, sent where people look at
training (TensorBoard's event files, an MLflow tracking store) beside cnnzoo's own history files.

A logger has three events, called by the trainer on the main process only::

    logger.start(config_dict, out_dir, unit="image")   # once the run folder exists
    logger.log_epoch(record)                           # an EpochRecord, after each epoch
    logger.finish(artifacts, figure_path, status=..., final_metrics=...)
        # the files to keep, the curves, why it stopped, the best weights' test scores ("test_acc")

Both packages are optional extras, imported when a logger is made (so that a missing one is
reported before any data is prepared), never by ``import cnnzoo``: both are slow to import
(``python -X importtime``). ``run_name`` gives each run its own name: compare makes one logger per
model and seed, and TensorBoard and MLflow then overlay the runs.

Names: TensorBoard tags group a metric's splits on one card (``loss/train``, ``loss/val``, ``acc/test``,
``lr``, ``lr/<group>``, ``time/epoch_s``, ``time/elapsed_s``, ``throughput/<unit>s_per_s``); MLflow keys
are ``history.json``'s columns (``train_loss``, ``val_acc``, ``lr``, ``epoch_time``,
``train_images_per_s``, ``elapsed``, ``test_acc``; ``lr_<group>``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import numpy as np
from PIL import Image

from cnnzoo.checkpoint import EpochRecord, throughput_key
from cnnzoo.errors import UserError

DEFAULT_EXPERIMENT = "cnnzoo"
# MLflow run states by the trainer's stopped_reason; any other reason (early_stopping, time_budget)
# is a run that finished as asked.
MLFLOW_STATUS = {"interrupted": "KILLED", "diverged": "FAILED"}
MLFLOW_PARAM_LENGTH = 6000  # MLflow's limit on a parameter's value (mlflow.utils.validation)
MLFLOW_BATCH = 100  # parameters per log_batch call, MLflow's limit


class RunLogger(Protocol):
    def start(self, config: dict[str, Any], out_dir: Path, *, unit: str = "image") -> None: ...

    def log_epoch(self, record: EpochRecord) -> None: ...

    def finish(self, artifacts: Sequence[Path] = (), figure_path: Optional[Path] = None, *,
               status: str = "completed", final_metrics: Optional[dict[str, float]] = None) -> None: ...


def tensorboard_tag(name: str) -> str:
    """History's name -> TensorBoard's tag: ``val_acc`` -> ``acc/val`` (other names stay as they are)."""
    split, _, metric = name.partition("_")
    return f"{metric}/{split}" if split in ("train", "val", "test") and metric else name


def tensorboard_scalars(record: EpochRecord, unit: str) -> dict[str, float]:
    """One epoch's values under TensorBoard's tags (splits of a metric share its card)."""
    scalars = {tensorboard_tag(f"{split}_{metric}"): value
               for split, values in (("train", record.train), ("val", record.val), ("test", record.test))
               for metric, value in values.items()}
    scalars["lr"] = record.lr
    scalars.update({f"lr/{group}": rate for group, rate in record.lr_groups.items()})
    scalars.update({"time/epoch_s": record.epoch_time, "time/elapsed_s": record.elapsed,
                    f"throughput/{throughput_key(unit).removeprefix('train_')}": record.throughput})
    return {tag: float(value) for tag, value in scalars.items()}


def history_scalars(record: EpochRecord, unit: str) -> dict[str, float]:
    """One epoch's values under ``history.json``'s names (what MLflow logs)."""
    row = record.to_dict(unit)
    scalars = {name: float(value) for name, value in row.items()
               if name != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool)}
    scalars.update({f"lr_{group}": float(rate) for group, rate in record.lr_groups.items()})
    return scalars


def options_table(config: dict[str, Any]) -> str:
    """The run's options as a Markdown table (what TensorBoard's text tab renders)."""
    lines = ["| option | value |", "|---|---|"]
    lines += [f"| {name} | {_as_text(value)} |" for name, value in sorted(config.items())]
    return "\n".join(lines)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class TensorBoardLogger:
    """Event files for TensorBoard, through ``torch.utils.tensorboard``'s ``SummaryWriter``.

    ``log_dir``: where the events go (default: the run folder); with ``run_name``, a sub-folder of
    that name, so several runs under one ``log_dir`` appear side by side.
    ``tensorboard --logdir <log_dir>`` shows them.
    """

    def __init__(self, log_dir=None, run_name: Optional[str] = None):
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional extra; slow to import (see module doc)
        except ImportError:
            raise UserError('--tensorboard needs the tensorboard package: pip install "cnnzoo[tensorboard]"') from None
        self._writer_class = SummaryWriter
        self.log_dir = Path(log_dir) if log_dir else None
        self.run_name = run_name
        self.writer: Any = None  # a SummaryWriter once started (an optional package: typed loosely)
        self.unit = "image"
        self.last_epoch = 0

    def start(self, config: dict[str, Any], out_dir: Path, *, unit: str = "image") -> None:
        folder = self.log_dir or Path(out_dir)
        self.log_dir = folder / self.run_name if self.run_name else folder
        self.unit = unit
        self.writer = self._writer_class(log_dir=str(self.log_dir))
        self.writer.add_text("options", options_table(config), global_step=0)

    def log_epoch(self, record: EpochRecord) -> None:
        for tag, value in tensorboard_scalars(record, self.unit).items():
            self.writer.add_scalar(tag, value, global_step=record.epoch)
        self.last_epoch = record.epoch
        self.writer.flush()  # a TensorBoard already open shows the epoch now, not at the end

    def finish(self, artifacts: Sequence[Path] = (), figure_path: Optional[Path] = None, *,
               status: str = "completed", final_metrics: Optional[dict[str, float]] = None) -> None:
        for name, value in (final_metrics or {}).items():
            self.writer.add_scalar(tensorboard_tag(name), float(value), global_step=self.last_epoch)
        if figure_path is not None and Path(figure_path).is_file():
            with Image.open(figure_path) as figure:
                pixels = np.asarray(figure.convert("RGB"))
            self.writer.add_image("curves", pixels, global_step=self.last_epoch, dataformats="HWC")
        self.writer.add_text("stopped", status, global_step=self.last_epoch)
        self.writer.close()


class MLflowLogger:
    """A run in an MLflow tracking store: the options as parameters, each epoch's metrics (step =
    epoch), and at the end the artifacts (best.pt, the curves, a report) and the run's state.

    ``tracking_uri``: default ``$MLFLOW_TRACKING_URI``, else MLflow's own default store in the
    current folder: since MLflow 3 ``mlflow.db`` (SQLite) with the artifacts in ``mlruns/``, before
    it the ``mlruns/`` folder alone. (MLflow 3 refuses to write a folder store unless
    ``MLFLOW_ALLOW_FILE_STORE=true``.) ``experiment``: created when missing.
    """

    def __init__(self, tracking_uri: Optional[str] = None, experiment: str = DEFAULT_EXPERIMENT,
                 run_name: Optional[str] = None):
        try:
            from mlflow.entities import Metric, Param  # optional extra; slow to import (see module doc)
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UserError('--mlflow needs MLflow: pip install "cnnzoo[mlflow]"') from None
        self._client_class, self._metric, self._param = MlflowClient, Metric, Param
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.client: Any = None  # an MlflowClient once started (an optional package: typed loosely)
        self.run_id: Optional[str] = None
        self.unit = "image"
        self.last_epoch = 0

    def start(self, config: dict[str, Any], out_dir: Path, *, unit: str = "image") -> None:
        self.unit = unit
        self.client = self._client_class(tracking_uri=self.tracking_uri)
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment)
        tags = {"cnnzoo.out_dir": str(out_dir)}
        if config.get("model"):
            tags["cnnzoo.model"] = str(config["model"])
        run = self.client.create_run(experiment_id, run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        params = [self._param(name, _as_text(value)[:MLFLOW_PARAM_LENGTH]) for name, value in sorted(config.items())]
        for start in range(0, len(params), MLFLOW_BATCH):
            self.client.log_batch(self.run_id, params=params[start:start + MLFLOW_BATCH])

    def log_epoch(self, record: EpochRecord) -> None:
        now = int(time.time() * 1000)
        metrics = [self._metric(name, value, now, record.epoch)
                   for name, value in history_scalars(record, self.unit).items()]
        self.client.log_batch(self.run_id, metrics=metrics)
        self.last_epoch = record.epoch

    def finish(self, artifacts: Sequence[Path] = (), figure_path: Optional[Path] = None, *,
               status: str = "completed", final_metrics: Optional[dict[str, float]] = None) -> None:
        if final_metrics:
            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[self._metric(name, float(value), now, self.last_epoch)
                                                        for name, value in final_metrics.items()])
        for path in [*artifacts, *([figure_path] if figure_path is not None else [])]:
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_tag(self.run_id, "cnnzoo.stopped_reason", status)
        self.client.set_terminated(self.run_id, status=MLFLOW_STATUS.get(status, "FINISHED"))


class RunLoggers:
    """Several loggers as one (none: every call does nothing), so the trainer calls each event once."""

    def __init__(self, loggers: Sequence[RunLogger] = ()):
        self.loggers = list(loggers)

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def start(self, config: dict[str, Any], out_dir: Path, *, unit: str = "image") -> None:
        for logger in self.loggers:
            logger.start(config, out_dir, unit=unit)

    def log_epoch(self, record: EpochRecord) -> None:
        for logger in self.loggers:
            logger.log_epoch(record)

    def finish(self, artifacts: Sequence[Path] = (), figure_path: Optional[Path] = None, *,
               status: str = "completed", final_metrics: Optional[dict[str, float]] = None) -> None:
        for logger in self.loggers:
            logger.finish(artifacts, figure_path, status=status, final_metrics=final_metrics)


def open_loggers(*, tensorboard: Optional[str] = None, mlflow: bool = False, run_name: Optional[str] = None,
                 experiment: str = DEFAULT_EXPERIMENT) -> RunLoggers:
    """The loggers the options ask for. ``tensorboard``: None (off), "" (the run folder) or a folder;
    ``mlflow``: log to the store ``$MLFLOW_TRACKING_URI`` names (see :class:`MLflowLogger`)."""
    loggers: list[RunLogger] = []
    if tensorboard is not None:
        loggers.append(TensorBoardLogger(tensorboard or None, run_name=run_name))
    if mlflow:
        loggers.append(MLflowLogger(experiment=experiment, run_name=run_name))
    return RunLoggers(loggers)
