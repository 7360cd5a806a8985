"""The training loop: ``train(model="resnet18")`` -> :class:`TrainResult`.

One epoch = one pass over the training split in an order fixed by ``(seed, epoch)``, then one pass
over the validation split, then ``last.pt`` (and ``best.pt`` when the task's monitored metric
improved) and the history files. Because the data order, augmentation and learning rate are
functions of ``(seed, epoch, step)`` and the checkpoint carries model, optimizer and RNG states, a
run resumed from ``last.pt`` ends with exactly the weights an uninterrupted run would have.

What is learned - batches, loss, metrics, defaults - is the task's (``cnnzoo.training.tasks``):
this file knows no images, labels or accuracy.
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from cnnzoo import checkpoint as ckpt
from cnnzoo import display
from cnnzoo.checkpoint import Checkpoint, EpochRecord
from cnnzoo.devices import autocast, make_deterministic, num_threads, pick_device
from cnnzoo.errors import UserError
from cnnzoo.factory import create_model, create_model_with_args
from cnnzoo.training.budget import (
    EpochCost,
    budget_plan,
    choose_precision,
    epochs_that_fit,
    fit_epochs_to_budget,
    measure_epoch_cost,
    measure_epoch_seconds,
    out_of_time,
    precision_is_measured,
)
from cnnzoo.training.config import TrainConfig, make_config, options_changeable_on_resume, resolved
from cnnzoo.training.distributed import Processes
from cnnzoo.training.ema import ModelEma
from cnnzoo.training.finetune import freeze_backbone, freeze_batchnorm, on_epoch_start
from cnnzoo.training.history import plot_curves, write_history
from cnnzoo.training.loggers import RunLoggers, open_loggers
from cnnzoo.training.mixing import mixing_generator
from cnnzoo.training.optim import LRSchedule, build_optimizer, group_learning_rates
from cnnzoo.training.tasks import Task, task_for_model
from cnnzoo.training.tasks.linear_probe import LinearProbe

NAN_CHECK_EVERY = 25   # on GPU, steps between finiteness checks (each check waits for the GPU)
PROGRESS_EVERY = 10    # steps between progress-bar text updates (each reads the metrics off the device)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. ``last.pt``/``best.pt`` still hold the last good epoch."""


@dataclass
class TrainResult:
    """What a run produced. ``model`` holds the best weights (the task's monitored metric)."""

    history: list[EpochRecord]
    best_epoch: int
    train_time_s: float
    out_dir: str
    model: nn.Module
    stopped_reason: str  # completed | early_stopping | time_budget | interrupted
    config: TrainConfig
    images_per_s: float  # training throughput over all epochs of this call (forward + backward), in units/s
    monitor: str = "val_acc"
    unit: str = "image"  # what images_per_s counts: the task's unit ("image", or "window" for sequences)
    class_names: list[str] = field(default_factory=list)
    # The best weights on the data's test split, when it has one (chosen on validation, reported on
    # test): {"test_loss", "test_acc", "test_images"} for images, as history.json's "test" holds it.
    test_metrics: Optional[dict[str, float]] = None
    planned_epochs: Optional[int] = None         # the epochs the run set out to do (its schedule's length)
    estimated_epoch_s: Optional[float] = None    # with a time budget: seconds per epoch, measured before training
    metrics: tuple[str, ...] = ("loss", "acc")   # the task's, as history records name them: what the curves draw
    metric_limits: dict[str, tuple[float, float]] = field(default_factory=dict)  # the curves' fixed y ranges

    @property
    def best(self) -> Optional[EpochRecord]:
        """The history record of the best epoch (None when no epoch completed)."""
        return next((r for r in self.history if r.epoch == self.best_epoch), None)

    @property
    def best_score(self) -> Optional[float]:
        return self.best.metric(self.monitor) if self.best is not None else None

    @property
    def best_val_acc(self) -> float:
        return float(self.best.val.get("acc", 0.0)) if self.best is not None else 0.0

    @property
    def final_val_acc(self) -> float:
        return float(self.history[-1].val.get("acc", 0.0)) if self.history else 0.0

    @property
    def history_rows(self) -> list[dict[str, Any]]:
        """The history as ``history.json`` holds it: one flat row per epoch (``train_loss``, ``val_acc``...)."""
        return [r.to_dict(self.unit) for r in self.history]

    def key_figures(self) -> dict[str, str]:
        """What a learner reads first, as (name, text): what and how long was trained, the best epoch
        and its score, the test split's when there is one, speed and where the files are."""
        epochs = f"{len(self.history)} of {self.planned_epochs or len(self.history)}"
        if self.stopped_reason != "completed":
            epochs += f" ({self.stopped_reason.replace('_', ' ')})"
        facts = {"model": _model_text(self.config), "data": str(self.config.data), "epochs": epochs,
                 "best epoch": str(self.best_epoch)}
        if self.best is not None:
            best = self.best.val
            facts.update({f"best val {m}": _metric_text(m, best[m]) for m in self.metrics if m in best})
        test = dict(self.test_metrics or {})
        count = test.pop(f"test_{self.unit}s", None)
        on = f" ({count:.0f} {self.unit}s)" if count else ""
        facts.update({name.replace("_", " ", 1): _metric_text(name, value) + on for name, value in test.items()})
        facts["training time"] = f"{self.train_time_s:.1f} s ({self.images_per_s:.0f} {self.unit}s/s)"
        facts["files"] = self.out_dir
        return facts

    def curves_figure(self):
        """The learning curves (each metric, train and validation, per epoch) as a matplotlib figure."""
        return display.curves_figure(self.history, self.metrics, _curves_title(self.config), self.metric_limits)

    def __repr__(self) -> str:
        return "TrainResult(" + ", ".join(f"{k}: {v}" for k, v in self.key_figures().items()) + ")"

    def _repr_html_(self) -> str:
        figures = [self.curves_figure()] if self.history else []
        return display.report_html(f"Training run: {self.config.model}", self.key_figures(), figures=figures)


def _model_text(config: TrainConfig) -> str:
    args = ", ".join(f"{k}={v}" for k, v in (config.model_args or {}).items())
    return f"{config.model}({args})" if args else config.model


def _metric_text(name: str, value: Optional[float]) -> str:
    """Accuracies as percentages (as the report prints them), other metrics with four significant digits."""
    if value is None:
        return "-"
    return f"{100 * value:.2f} %" if name.endswith("acc") else f"{value:.4g}"


def _curves_title(config: TrainConfig) -> str:
    return f"{config.model} on {config.data}"


# --------------------------------------------------------------------------------------- set-up

def default_out_dir(model: str, data: str) -> Path:
    """``runs/<model>-<data>``, with ``-2``, ``-3``... appended rather than overwrite a run."""
    data_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(data).rstrip("/\\")).name) or "data"
    base = Path("runs") / f"{model}-{data_name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def resolved_config(config: TrainConfig, task: Task) -> TrainConfig:
    """The settings a run of ``config`` on the task's data would use, every default filled in,
    without training: what ``cnnzoo compare`` records and reuses runs by."""
    device = pick_device(config.device)
    model_args = task.model_args(config)
    with torch.device("meta"):  # only the structure decides defaults: no memory, no initialisation
        model = create_model(config.model, **model_args)
    return dataclasses.replace(task.resolve(config, model, device.type), model_args=model_args)


# ----------------------------------------------------------------------------------- one epoch

class _NonFinite(Exception):
    def __init__(self, step: int, loss: float):
        super().__init__(step, loss)
        self.step, self.loss = step, loss


@dataclass(frozen=True)
class _EpochStats:
    """One training pass: the task's metrics (name -> value), the last learning rate, the seconds it
    took and the samples it saw."""

    metrics: dict[str, float]
    lr: float
    seconds: float
    samples: int


def _train_one_epoch(task: Task, model, loader, optimizer, schedule, scaler, config, device, bar, *, epoch: int = 0,
                     ema: Optional[ModelEma] = None, averaged: Optional[nn.Module] = None) -> _EpochStats:
    """One pass over ``loader``: the task's metrics and throughput. Raises ``_NonFinite`` on a NaN/inf
    loss before the step that would spread it is taken (on GPU, within ``NAN_CHECK_EVERY`` steps).
    Batches are mixed (mixup/CutMix) from a generator of ``(seed, epoch)``; ``ema`` averages
    ``averaged`` (the model without DDP's wrapper) after each optimizer step."""
    model.train()
    mix_gen = mixing_generator(config.seed, epoch)
    metrics = task.train_metrics(device)
    finite = torch.ones((), device=device, dtype=torch.bool)
    seen, lr = 0, schedule.lr_at(schedule.step)
    check_every = 1 if device.type == "cpu" else NAN_CHECK_EVERY  # a CPU check costs nothing
    start = time.perf_counter()
    for i, batch in enumerate(loader):
        batch = task.mix(batch, config, mix_gen)
        lr = schedule.apply(optimizer)
        with autocast(device, config.amp):
            loss, outputs = task.loss(model, batch, config)
        finite &= torch.isfinite(loss.detach())
        if (i + 1) % check_every == 0 and not finite.item():
            raise _NonFinite(schedule.step, loss.item())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            ema.update(averaged if averaged is not None else model)
        metrics.update(batch, loss.detach(), outputs.detach())
        n = task.batch_size_of(batch)
        seen += n
        if bar is not None:
            bar.update(n)
            if i % PROGRESS_EVERY == 0 or i == len(loader) - 1:
                elapsed = time.perf_counter() - start
                bar.set_postfix(**metrics.progress(), **{f"{task.bar_unit}_s": f"{seen / elapsed:.0f}"},
                                lr=f"{lr:.3g}", refresh=False)
    if not finite.item():
        raise _NonFinite(schedule.step, float("nan"))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return _EpochStats(metrics.result(), lr, time.perf_counter() - start, seen)


# ------------------------------------------------------------------------------ checkpointing

def _resume_state(config: TrainConfig, out_dir: Path) -> Checkpoint:
    path = out_dir / "last.pt"
    if not path.is_file():
        raise UserError(f"cannot resume: {str(path)!r} does not exist. Run without --resume to start "
                        "a new run, or point --out at the folder of the run to continue")
    saved = ckpt.load_checkpoint(path)
    if saved.model_name != config.model:
        raise UserError(f"cannot resume: {str(path)!r} is a run of {saved.model_name!r}, not {config.model!r}")
    if saved.resume is None:
        raise UserError(f"cannot resume: {str(path)!r} holds no optimizer state (a best.pt renamed?)")
    return saved


def _config_for_resume(requested: TrainConfig, saved: TrainConfig, explicit: set[str]) -> TrainConfig:
    """The saved run's resolved config; only options that do not change the computation so far
    (declared ``on_resume`` in TrainConfig: more epochs, patience, time budget, device, threads)
    may be changed on resume."""
    changeable = options_changeable_on_resume()
    updates = {k: getattr(requested, k) for k in changeable & explicit if getattr(requested, k) is not None}
    return dataclasses.replace(saved, **updates, resume=True, out_dir=requested.out_dir)


# ------------------------------------------------------------------------------------- train

def train(config: Optional[TrainConfig] = None, *, data=None, progress: bool = True,
          on_epoch_end: Optional[Callable[[EpochRecord], None]] = None, loggers: Optional[RunLoggers] = None,
          **fields_: Any) -> TrainResult:
    """Train a registered model and return its history and best weights.

    ``train(model="resnet18")`` or ``train(TrainConfig(...), epochs=5)``. ``data`` takes a
    ``DataSplits`` already loaded (to train many models on one split); otherwise ``config.data`` is
    loaded. ``on_epoch_end(record)`` is called after each epoch, its checkpoints queued for writing.
    ``loggers``: where the run is also logged (default: those ``config.tensorboard`` and
    ``config.mlflow`` ask for; compare passes its own, one per model and seed).
    Raises :class:`TrainingDiverged` on a NaN/inf loss, :class:`UserError` for bad options.
    """
    if isinstance(data, (str, os.PathLike)):  # train(model=..., data="digits") names the source
        fields_["data"], data = os.fspath(data), None
    explicit = set(fields_) | ({f for f, v in vars(config).items() if v is not None} if config else set())
    config = make_config(config, **fields_)
    processes = Processes.from_env()  # under torchrun: this process's rank; alone: rank 0 of 1
    if not processes.is_main:
        loggers = RunLoggers()  # one logged run per job, as one set of files
    elif loggers is None:  # before any data is prepared: a missing package fails at once
        loggers = open_loggers(tensorboard=config.tensorboard, mlflow=config.mlflow)
    with num_threads(config.threads):  # a library call leaves the process as it found it
        try:
            return _train(config, data, progress and processes.is_main, on_epoch_end, explicit, processes, loggers)
        finally:
            processes.stop()


@dataclass
class _Run:
    """Everything one run mutates, with the steps of an epoch as methods."""

    config: TrainConfig
    task: Task
    model_args: dict
    model: nn.Module     # what is saved; ``trained`` is what runs forward (DDP's wrapper under torchrun)
    trained: nn.Module
    processes: Processes
    device: torch.device
    out_dir: Path
    train_loader: Any
    val_loader: Any
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: Any
    ema: Optional[ModelEma] = None
    loggers: RunLoggers = field(default_factory=RunLoggers)
    history: list[EpochRecord] = field(default_factory=list)
    best_score: Optional[float] = None
    best_epoch: int = 0
    best_state: Optional[dict] = None
    best_weights: str = "raw"  # which weights best_state holds: "raw" or "ema"
    estimated_epoch_s: Optional[float] = None
    cut_by_budget: bool = False  # the budget planned fewer epochs than asked for
    budget_asked: int = 0  # the epochs asked for (or the default count): fewer, and the budget cut the run
    budget_most: int = 0  # with a time budget: the most epochs a re-plan may give
    replanned: bool = False  # a re-plan has been logged
    samples_trained: int = 0  # by this call, for its throughput
    time_training: float = 0.0
    writer: ckpt.BackgroundWriter = field(default_factory=ckpt.BackgroundWriter)

    def checkpoint(self) -> Checkpoint:
        """A snapshot of the epochs so far, with what resuming needs (optimizer, schedule, RNG...)."""
        return ckpt.training_checkpoint(
            model_name=self.config.model, model_args=self.model_args, model=self.model, config=self.config,
            task=self.task.name, fields=self.task.checkpoint_fields(self.config), history=self.history,
            monitor=self.task.monitor, best_score=self.best_score, unit=self.task.unit,
            optimizer=self.optimizer, schedule=self.schedule, scaler=self.scaler, ema=self.ema)

    def save_epoch(self, improved: bool) -> None:
        """Queue ``best.pt`` (when improved; weights only, for using the model) and ``last.pt``
        (rank 0 only: one set of files per run, whatever the number of processes)."""
        if not self.processes.is_main:
            return
        last = self.checkpoint()
        jobs = []
        if improved and self.best_weights == "ema" and self.best_state is not None:  # the average validated better
            jobs.append((dataclasses.replace(last.without_resume(), model_state=self.best_state, best_weights="ema"),
                         self.out_dir / "best.pt"))
        elif improved:  # the same snapshot without the resume-only parts (no second copy of the weights)
            jobs.append((last.without_resume(), self.out_dir / "best.pt"))
        jobs.append((last, self.out_dir / "last.pt"))
        self.writer.submit(jobs)

    def replan(self, epochs: int, log) -> int:
        """The budget holds only ``epochs`` in all at the pace so far: the schedule (and progressive
        resizing) is fitted to them, so the run still ends with its learning rate decayed. The new
        plan is in the config the next checkpoint stores, so a resumed run keeps it."""
        if not self.replanned:  # said once: later re-plans show in the epoch counter (k/N), not a line each
            pace = "longer" if epochs < resolved(self.config.epochs) else "less time"
            log(f"time budget: epochs take {pace} than planned; {epochs} epochs fit instead of "
                f"{self.config.epochs}, and the learning-rate schedule is fitted to them (again after each "
                "epoch, as the pace changes: the epoch counter shows the plan)")
            self.replanned = True
        self.config = dataclasses.replace(self.config, epochs=epochs)
        if self.config.progressive_resize:  # the sizes rise over the epochs now planned
            self.train_loader, self.val_loader = self.task.loaders(self.config, self.device, self.model,
                                                                   shard=self.processes.shard)
        self.schedule.total_steps = epochs * len(self.train_loader)
        self.cut_by_budget = epochs < self.budget_asked
        return epochs

    def restore(self, saved: Checkpoint) -> None:
        """Continue from a ``last.pt``: weights, optimizer, schedule position, history, RNG."""
        resume = saved.resume
        assert resume is not None  # _resume_state refuses a checkpoint without it
        self.model.load_state_dict(saved.model_state)
        self.optimizer.load_state_dict(resume.optimizer)
        if resume.scheduler is not None:  # a training checkpoint always has one
            self.schedule.load_state_dict(resume.scheduler)
        if resume.scaler and self.scaler.is_enabled():
            self.scaler.load_state_dict(resume.scaler)
        if self.ema is not None and resume.ema is not None:
            self.ema.load_state_dict(resume.ema)
        self.history = list(saved.history)
        self.best_score = saved.best_score
        self.best_epoch = max((r.epoch for r in self.history if self.score(r)[0] == self.best_score), default=0)
        best_path = self.out_dir / "best.pt"
        if best_path.is_file():
            best = ckpt.load_checkpoint(best_path)
            self.best_state, self.best_weights = best.model_state, best.best_weights
        ckpt.set_rng_state(resume.rng)

    def run_epoch(self, epoch: int, progress: bool) -> EpochRecord:
        """Train one pass, validate, and return the epoch's history record."""
        epoch_start = time.perf_counter()
        # gradual fine-tuning: which parameters learn is a function of the epoch (exact on resume)
        epochs = resolved(self.config.epochs)
        event = on_epoch_start(self.model, self.optimizer, self.config.finetune, epoch, epochs)
        self.train_loader.set_epoch(epoch)
        bar = _progress_bar(progress, epoch, epochs,
                            len(self.train_loader) * resolved(self.config.batch_size), self.task.bar_unit)
        try:
            stats = _train_one_epoch(self.task, self.trained, self.train_loader, self.optimizer, self.schedule,
                                     self.scaler, self.config, self.device, bar, epoch=epoch, ema=self.ema,
                                     averaged=self.model)
        finally:
            if bar is not None:
                bar.close()
        processes, metrics, amp = self.processes, self.task.metrics, resolved(self.config.amp)
        train = processes.mean_over_samples(stats.metrics, stats.samples)
        processes.average_batchnorm_statistics(self.model)  # validate and save one model, not N
        val = processes.mean_over_samples(self.task.evaluate(self.model, self.val_loader, self.device, amp),
                                          self.val_loader.num_samples)
        val_ema = {}
        if self.ema is not None:
            # each process averaged its own batches' statistics: one average of them, as for the raw model
            processes.average_batchnorm_statistics(self.ema.module)
            val_ema = processes.mean_over_samples(
                self.task.evaluate(self.ema.module, self.val_loader, self.device, amp),
                self.val_loader.num_samples)
        samples = stats.samples * processes.world_size  # throughput of the whole job
        self.samples_trained += samples
        self.time_training += stats.seconds
        epoch_time = time.perf_counter() - epoch_start
        rates = group_learning_rates(self.optimizer)
        record = EpochRecord(
            epoch=epoch + 1, train={m: train[m] for m in metrics}, val={m: val[m] for m in metrics}, lr=stats.lr,
            epoch_time=epoch_time, throughput=max(samples, 1) / max(stats.seconds, 1e-9),
            elapsed=(self.history[-1].elapsed if self.history else 0.0) + epoch_time,
            # backbone and head at their own rates: what each really stepped with
            lr_groups=rates if len(rates) > 1 else {}, event=event, val_ema={m: val_ema[m] for m in val_ema})
        self.history.append(record)
        return record

    def score(self, record: EpochRecord) -> tuple[float, str]:
        """The epoch's monitored score and the weights that reached it: the raw ones, or with --ema
        their average when it validated better."""
        raw = record.metric(self.task.monitor)
        if not record.val_ema:
            return raw, "raw"
        averaged = record.metric(ckpt.EMA_PREFIX + self.task.monitor.removeprefix("val_"))
        return (averaged, "ema") if self.task.is_better(averaged, raw) else (raw, "raw")

    def keep_if_best(self, record: EpochRecord) -> bool:
        """Remember the weights of a new best monitored metric (``save_epoch`` writes best.pt)."""
        score, which = self.score(record)
        if not self.task.is_better(score, self.best_score):
            return False
        self.best_score, self.best_epoch, self.best_weights = score, record.epoch, which
        weights = self.ema.module if which == "ema" and self.ema is not None else self.model
        self.best_state = {k: v.detach().cpu().clone() for k, v in weights.state_dict().items()}
        return True


def _saved_run(config: TrainConfig, explicit: set, processes: Processes) -> tuple[TrainConfig, Optional[Checkpoint]]:
    """The config to run and, when resuming (asked, or torchrun restarting the job), the run's last.pt.
    Refuses to overwrite a run without --resume."""
    out_dir = Path(config.out_dir) if config.out_dir else None
    if processes.restart and out_dir is not None and (out_dir / "last.pt").exists():
        config = dataclasses.replace(config, resume=True)  # torchrun restarted the job
    if config.resume:
        if out_dir is None:
            raise UserError("--resume needs --out: the folder of the run to continue")
        saved = _resume_state(config, out_dir)
        return _config_for_resume(config, saved.config, explicit), saved
    if out_dir is not None and (out_dir / "last.pt").exists():
        raise UserError(f"{str(out_dir)!r} already holds a run (last.pt). Add --resume to continue it, "
                        "or choose another --out so it is not overwritten")
    return config, None


def _load_task(config: TrainConfig, data, progress: bool, processes: Processes) -> Task:
    """The run's task on its data; under torchrun rank 0 prepares (and caches) the data first and the
    others then read the cache."""
    if not processes.is_main:
        processes.barrier()
    task_class = LinearProbe if config.finetune == "linear" else task_for_model(config.model)
    task = task_class.load(config, data, display.bars_wanted(progress))
    if processes.is_main:
        processes.barrier()
    return task


def _choose_precision(config: TrainConfig, task: Task, model, loaders, device, resuming: bool,
                      processes: Processes, log) -> TrainConfig:
    """Mixed precision left to its default: on when timing says so (see ``precision_is_measured``),
    else off. A resumed run keeps its saved choice."""
    if resuming or not precision_is_measured(config, task, device):
        return dataclasses.replace(config, amp=bool(config.amp))

    def measure(amp: bool) -> EpochCost:
        return measure_epoch_cost(task, model, loaders[0], loaders[1], config, device, amp=amp, both_sides=True)

    # rank 0's timing: every process trains in the same precision
    choice = processes.broadcast(choose_precision(measure, config))
    log(choice.sentence())
    return dataclasses.replace(config, amp=choice.amp)


def _fit_budget(config: TrainConfig, task: Task, model, loaders, device, resuming: bool, processes: Processes,
                log, epochs_given: bool = True) -> tuple[TrainConfig, Optional[float], int]:
    """With a time budget: the epochs cut to fit (a new run; without --epochs, as many as the budget
    holds), the measured seconds of the first epoch (in the precision the run trains in), and the
    most epochs a later re-plan may give."""
    if not config.time_budget_s:
        return config, None, resolved(config.epochs)
    train_loader, val_loader = loaders
    epoch_s = processes.broadcast(  # rank 0's measurement: every process plans the same
        measure_epoch_seconds(task, model, train_loader, val_loader, config, device))
    if resuming:  # the saved plan stands, and bounds any re-plan
        return config, epoch_s, resolved(config.epochs)
    fill = not epochs_given
    fitted = fit_epochs_to_budget(config, epoch_s, log, fill=fill)
    return fitted, epoch_s, budget_plan(config, epoch_s, fill=fill).most


def _prepare(config: TrainConfig, data, explicit: set, progress: bool,
             processes: Processes, log) -> tuple[_Run, Optional[Checkpoint]]:
    """Check the output folder, load data, build and configure everything; restore when resuming."""
    config, saved = _saved_run(config, explicit, processes)
    out_dir = Path(config.out_dir) if config.out_dir else None
    device = processes.device(pick_device(config.device))
    backend = processes.start(device)
    if config.deterministic:
        make_deterministic(device)
    task = _load_task(config, data, progress, processes)
    config = dataclasses.replace(config, data=task.source)
    processes.check_same("options", {k: v for k, v in config.to_dict().items() if k not in ("device", "threads")})
    processes.check_same("data", {"source": task.source, "summary": task.summary(), "train": task.num_train})
    if saved is not None:
        task.check_resume(saved)
    if out_dir is None:  # rank 0 picks the folder (runs/<model>-<data>-N) and tells the others
        out_dir = default_out_dir(config.model, config.data) if processes.is_main else None
        out_dir = Path(processes.broadcast(str(out_dir) if out_dir else None))
    if processes.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(config.seed)  # model initialisation is a function of the seed
    # The arguments the weights imply (a checkpoint's width, torchvision's GoogLeNet layout) are kept
    # with the run, so the model can be rebuilt from its checkpoint alone.
    # Resuming, last.pt holds the weights and the saved arguments already include what the weights
    # implied: no need to read (or download) the starting weights again.
    model, model_args = create_model_with_args(config.model, weights=None if saved else config.weights,
                                               progress=progress, **task.model_args(config))
    epochs_given = config.epochs is not None
    if saved is None:
        config = task.resolve(config, model, device.type)
    if config.freeze_bn:
        log(f"--freeze-bn: {freeze_batchnorm(model)} batch-norm layers keep the statistics and scale of the weights")
    if config.finetune == "linear":
        freeze_backbone(model)  # before the optimizer, so that only the head is in it
    config = dataclasses.replace(config, out_dir=str(out_dir), model_args=model_args)
    model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)

    train_loader, val_loader = task.loaders(config, device, model, shard=processes.shard)
    run_epochs = config.epochs
    config = _choose_precision(config, task, model, (train_loader, val_loader), device, saved is not None,
                               processes, log)
    config, estimated_epoch_s, budget_most = _fit_budget(config, task, model, (train_loader, val_loader), device,
                                                         saved is not None, processes, log, epochs_given)
    if config.progressive_resize and config.epochs != run_epochs:  # the sizes rise over the epochs now planned
        train_loader, val_loader = task.loaders(config, device, model, shard=processes.shard)
    if processes.enabled:
        log(f"torchrun: {processes.world_size} processes ({backend}); the global batch of {config.batch_size} is "
            f"{resolved(config.batch_size) // processes.world_size} per process, and the learning rate {config.lr:g} "
            "is the one for the global batch (as one process would use)")
    steps_per_epoch = len(train_loader)
    run = _Run(
        config=config, task=task, model_args=model_args, model=model, device=device, out_dir=out_dir,
        trained=processes.wrap(model, device, config.sync_bn, log, learning_set_changes=config.finetune == "gradual"),
        processes=processes,
        train_loader=train_loader, val_loader=val_loader,
        optimizer=build_optimizer(model, resolved(config.optimizer), resolved(config.lr), resolved(config.weight_decay),
                                  backbone_lr_scale=resolved(config.backbone_lr_scale)),
        schedule=LRSchedule(resolved(config.schedule), resolved(config.lr),
                            total_steps=resolved(config.epochs) * steps_per_epoch,
                            warmup_steps=round(resolved(config.warmup_epochs) * steps_per_epoch)),
        scaler=torch.amp.GradScaler(device.type, enabled=resolved(config.amp) and device.type == "cuda"),
        ema=ModelEma(model, config.ema) if config.ema else None,
        estimated_epoch_s=estimated_epoch_s, budget_asked=resolved(run_epochs), budget_most=budget_most,
        cut_by_budget=saved is None and resolved(config.epochs) < resolved(run_epochs))
    if saved is not None:
        run.restore(saved)
    return run, saved


def _train(config: TrainConfig, data, progress: bool, on_epoch_end, explicit: set,
           processes: Processes, loggers: RunLoggers) -> TrainResult:
    log = print if progress else (lambda *a, **k: None)
    run, saved = _prepare(config, data, explicit, progress, processes, log)
    run.loggers = loggers
    config, out_dir, task = run.config, run.out_dir, run.task
    epochs = resolved(config.epochs)
    start_epoch = len(run.history)
    if saved is not None:
        log(f"resuming {out_dir / 'last.pt'} after epoch {start_epoch} of {config.epochs}")
    log(task.describe(config))
    log(f"data: {task.summary()}; device {run.device}; writing to {out_dir}")
    _write_history(run)
    loggers.start(config.to_dict(), out_dir, unit=task.unit)
    live = _live_curves(run, on_epoch_end, progress)

    stopped_reason = "completed"
    run_start = time.perf_counter()
    epochs_since_best = len(run.history) - run.best_epoch
    epoch = start_epoch - 1
    try:
        while epoch + 1 < epochs:  # not a range: a time budget's re-plan moves the end either way
            epoch += 1
            # rank 0's clock decides for every process: one stopping alone would leave the others waiting
            if processes.broadcast(out_of_time(config, run_start, run.history[start_epoch:])):
                stopped_reason = "time_budget"
                break
            record = run.run_epoch(epoch, progress)
            improved = run.keep_if_best(record)
            epochs_since_best = 0 if improved else epochs_since_best + 1
            run.save_epoch(improved)
            _write_history(run)
            loggers.log_epoch(record)
            log(_epoch_line(task, record, epochs, improved))
            if live is not None:
                live(record)
            if on_epoch_end is not None:
                on_epoch_end(record)
            if config.patience and epochs_since_best >= config.patience:
                stopped_reason = "early_stopping"
                log(f"early stopping: no better {task.monitor} for {config.patience} epochs")
                break
            fit = processes.broadcast(epochs_that_fit(run.config, run_start, run.history[start_epoch:], epoch + 1,
                                                      run.budget_most))
            if fit is not None:
                epochs = run.replan(fit, log)
        run.writer.wait()
        if stopped_reason == "completed" and run.cut_by_budget:
            stopped_reason = "time_budget"  # it did all the epochs the budget held, fewer than asked
    except _NonFinite as err:
        run.writer.wait()  # the last good epoch's checkpoint finishes; nothing of the bad one is saved
        _finish_files(run, "diverged")
        kept = (f"{out_dir / 'last.pt'} (epoch {len(run.history)})" if run.history
                else "no checkpoint (no epoch completed)")
        raise TrainingDiverged(
            f"the training loss became {err.loss} at step {err.step} of epoch {epoch + 1}; "
            f"stopped. Kept: {kept}. Try a lower learning rate (now --lr {config.lr:g}), "
            "a longer --warmup, or --optimizer adamw") from None
    except KeyboardInterrupt:
        stopped_reason = "interrupted"
        run.writer.wait()  # the last completed epoch is on disk before we say so
        _report_interruption(log, run, epoch)

    wall_time = time.perf_counter() - run_start
    if run.best_state is not None:
        run.model.load_state_dict(run.best_state)
    test = _test_metrics(run) if run.history else None
    if test is not None:
        log(f"best epoch ({run.best_epoch}) on the test split: " + ", ".join(f"{k} {v:.4g}" for k, v in test.items()))
    _finish_files(run, stopped_reason, test)
    return _result(run, stopped_reason, wall_time, test)


def _live_curves(run: _Run, on_epoch_end, progress: bool) -> Optional[display.LiveCurves]:
    """In a notebook, one figure of the curves redrawn in the cell after each epoch (as fastai's graph
    callback), unless the caller passed its own LiveCurves (compare's, one figure for all its models)."""
    if not progress or isinstance(on_epoch_end, display.LiveCurves) or not display.in_notebook():
        return None
    curves = display.LiveCurves(run.task.metrics, _curves_title(run.config), run.task.metric_limits)
    curves.history.extend(run.history)  # resumed: the epochs before this call are on the figure too
    return curves


def _report_interruption(log, run: _Run, epoch: int) -> None:
    # last.pt is written only at epoch ends, so it holds the last completed epoch: resuming from
    # it is exact, where saving the half-done epoch would not be.
    if run.history:
        log(f"\ninterrupted during epoch {epoch + 1}: {run.out_dir / 'last.pt'} holds the last completed "
            f"epoch ({len(run.history)}); the partial epoch is not saved. Continue with: cnnzoo train "
            f"{run.config.model} --out {run.out_dir} --resume", file=sys.stderr)
    else:
        log("\ninterrupted before the first epoch completed: nothing to resume from", file=sys.stderr)


def _test_metrics(run: _Run) -> Optional[dict[str, float]]:
    """The best weights' metrics on the data's test split, as history.json's "test" holds them:
    ``{"test_loss", "test_acc", "test_images"}`` for images (None when the data has no test split)."""
    scored = run.task.test_metrics(run.model, run.config, run.device)
    if scored is None:
        return None
    metrics, count = scored
    return {**{f"test_{name}": value for name, value in metrics.items()}, f"test_{run.task.unit}s": count}


def _result(run: _Run, stopped_reason: str, wall_time: float, test: Optional[dict]) -> TrainResult:
    run.model.eval()
    return TrainResult(
        history=run.history, best_epoch=run.best_epoch, train_time_s=wall_time, out_dir=str(run.out_dir),
        model=run.model, stopped_reason=stopped_reason, config=run.config,
        images_per_s=run.samples_trained / run.time_training if run.time_training else 0.0,
        monitor=run.task.monitor, unit=run.task.unit, class_names=list(run.task.class_names),
        test_metrics=test,
        planned_epochs=run.config.epochs, estimated_epoch_s=run.estimated_epoch_s,
        metrics=tuple(run.task.metrics), metric_limits=dict(run.task.metric_limits))


def _write_history(run: _Run, extra: Optional[dict] = None) -> None:
    if not run.processes.is_main:
        return
    write_history(run.out_dir, run.history, run.config, run.task.unit, extra, columns=run.task.history_columns)


def _finish_files(run: _Run, stopped_reason: str, test: Optional[dict] = None) -> None:
    _write_history(run, {"best_epoch": run.best_epoch, "stopped_reason": stopped_reason,
                         **({"test": test} if test is not None else {}),
                         **({"best_weights": run.best_weights} if run.ema is not None else {})})
    figure = run.out_dir / "curves.png"
    if run.history and run.processes.is_main:
        plot_curves(run.history, figure, metrics=run.task.metrics, limits=run.task.metric_limits,
                    title=_curves_title(run.config))
    run.loggers.finish([run.out_dir / "best.pt", run.out_dir / "history.json"], figure if figure.is_file() else None,
                       status=stopped_reason, final_metrics=test)


def _progress_bar(progress: bool, epoch: int, epochs: int, total: int, unit: str):
    # A bar in a notebook or on a terminal; none in a redirected log, where each refresh would be a
    # carriage-return line (thousands per run) and the per-epoch line says what matters.
    return display.progress_bar(total, desc=f"epoch {epoch + 1}/{epochs}", unit=unit, progress=progress)


def _epoch_line(task: Task, r: EpochRecord, epochs: int, improved: bool) -> str:
    metrics = "  ".join(f"{split} " + " ".join(f"{m} {values[m]:.4f}" for m in task.metrics)
                        for split, values in (("train", r.train), ("val", r.val)))
    return (f"epoch {r.epoch:>3}/{epochs}  {metrics}  lr {r.lr:.3g}  "
            f"{r.throughput:.0f} {task.bar_unit}/s  {r.epoch_time:.1f}s"
            + ("  *best" if improved else ""))
