"""Train several models on the same data, measure each, and keep the report current after every one.

In two steps. :func:`plan_comparison` checks every model and option, loads the data once per image
size, resolves each model's settings (a :class:`~cnnzoo.training.TrainConfig`), finds the models an
earlier run already did with the same settings, estimates the others' time from a few measured steps
and prints the plan: a :class:`ComparisonPlan`. :func:`run_plan` then trains each model of the plan
(once per seed) with the ``train`` function it is given, measures and evaluates it and records it -
catching a failure so the others still run - and rewrites every artefact. Ctrl-C marks the model in
training as interrupted, writes the report, and re-raises so the command exits with 130.
:func:`compare` is the two in one call.
"""
from __future__ import annotations

import copy
import dataclasses
import gc
import shutil
import statistics
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from cnnzoo import display, training
from cnnzoo.checkpoint import load_checkpoint
from cnnzoo.compare.analysis import accuracy_text, verdict
from cnnzoo.compare.estimate import Estimate, estimate_model, format_duration, plan_table
from cnnzoo.compare.gallery import per_class_from_evaluation
from cnnzoo.compare.meta import EVERY_MODEL, ChosenSet, ComparisonMeta, DataSummary, settings_notes
from cnnzoo.compare.plan import DefaultPlan, ImageSize, choose_plan, model_image_size, plans_table
from cnnzoo.compare.plots import PLOTS
from cnnzoo.compare.record import ModelRecord, SeedRun, interval_over_images_and_seeds, mean_and_std
from cnnzoo.compare.report import markdown_table, table_align, table_rows, write_report
from cnnzoo.compare.results import find_reusable, jsonable, model_slug, read_results_json
from cnnzoo.data import DataSplits, load_dataset
from cnnzoo.devices import pick_device
from cnnzoo.errors import UserError
from cnnzoo.profiling import measure_latency, summary
from cnnzoo.registry import check_model_args, parse_model_spec, require_task
from cnnzoo.training import TrainConfig, TrainResult
from cnnzoo.training.config import make_config, training_options
from cnnzoo.training.distributed import Processes
from cnnzoo.training.loggers import RunLoggers, open_loggers
from cnnzoo.training.tta import check_flips_allowed

TRACEBACK_LINES = 25  # how much of a failure's traceback the report keeps
SPEC_IMAGE_SIZE = "image_size"  # spec keys that are not model arguments: the side it trains at,
SPEC_WEIGHTS = "weights"        # and the weights it starts from (resnet18:weights=torchvision)
# config fields RunSettings keeps otherwise or not (where a run is logged does not change its results)
PER_RUN = ("model", "model_args", "data", "out_dir", "resume", "tensorboard", "mlflow")

TrainFunction = Callable[..., TrainResult]  # train(config, *, data, progress): cnnzoo.training.train


@dataclass(frozen=True)
class ModelEntry:
    """One model of the comparison: ``name`` is its spec as written (``'resnet18:norm=group'``);
    ``image_size`` its own input side and ``weights`` what it starts from, when the spec gives them
    (else the comparison's)."""

    name: str
    model: str
    model_args: dict
    image_size: Optional[int] = None
    weights: Optional[str] = None

    @property
    def slug(self) -> str:
        return model_slug(self.name)


@dataclass
class LatencySettings:
    """How long to spend timing each trained model (kept short: it is a few percent of the run)."""

    repeats: int = 10
    warmup: int = 3
    batch_repeats: int = 3  # at the training batch size each repeat is already many images
    # Where the latencies are measured: PyTorch eager ("torch"), or the trained model exported and
    # verified for "onnxruntime" / "int8" (calibrated on the training images), so that the verdict's
    # "fastest" is measured where the model will run.
    runtime: str = "torch"


@dataclass(frozen=True)
class DataFacts:
    """The data a model's numbers come from, as its settings record it."""

    source: str
    train_images: int
    val_images: int
    classes: tuple[str, ...]
    image_size: int

    @classmethod
    def from_splits(cls, splits: DataSplits) -> "DataFacts":
        return cls(str(splits.source), len(splits.train), len(splits.val) if splits.val is not None else 0,
                   tuple(splits.class_names), splits.image_size)


@dataclass(frozen=True)
class RunSettings:
    """Everything that decides one model's numbers: its spec, the data, every training setting as
    training itself resolves it (batch size, the family's optimizer...), the seeds and where latency is
    measured. ``results.json`` keeps :meth:`to_dict` as each record's ``settings``; a re-run reuses a
    result whose settings are equal, and retrains exactly when any of them changed."""

    model: str
    model_args: dict          # as the spec gives them (the config's are the resolved ones)
    data: DataFacts
    config: TrainConfig       # resolved; its per-run fields (PER_RUN) are not compared
    repeats: int = 1
    latency_runtime: str = "torch"

    def to_dict(self) -> dict[str, Any]:
        resolved = {k: v for k, v in self.config.to_dict().items() if k not in PER_RUN}
        out = {"model": self.model, "model_args": self.model_args, "data": dataclasses.asdict(self.data), **resolved}
        if self.repeats > 1:  # absent for one seed, so results written before repeats existed are still reused
            out["repeats"] = self.repeats
        if self.latency_runtime != "torch":  # measured elsewhere: a result timed in PyTorch is not this one
            out["latency_runtime"] = self.latency_runtime
        return jsonable(out)


class DataCache:
    """The data as each run sees it, loaded once per (image size, seed). The seed picks the validation
    split of built-in and synthetic data (not of folders, split by file names), so a repeat's
    checkpoint describes its own data exactly and ``cnnzoo evaluate`` finds the images it held out."""

    def __init__(self, config: TrainConfig, progress: bool):
        self.config, self.progress = config, progress
        self._loaded: dict[tuple[Optional[int], int], DataSplits] = {}

    def splits(self, image_size: Optional[int], seed: Optional[int] = None) -> DataSplits:
        """The data at ``image_size`` (None: the data's own) split by ``seed`` (the comparison's when None)."""
        seed = self.config.seed if seed is None else seed
        if (image_size, seed) not in self._loaded:
            c = self.config
            splits = load_dataset(c.data, image_size=image_size, val_fraction=c.val_fraction, seed=seed,
                                  cache_dir=c.cache_dir, resize=c.resize, progress=self.progress,
                                  val_source=c.val_data, path_column=c.path_column, label_column=c.label_column)
            self._loaded[(image_size, seed)] = self._loaded[(splits.image_size, seed)] = splits
        return self._loaded[(image_size, seed)]

    @property
    def image_sizes(self) -> list[int]:
        return sorted({s.image_size for s in self._loaded.values()})


@dataclass(frozen=True)
class PlannedModel:
    """One model of a plan: how each of its runs is configured, and what is known before training."""

    entry: ModelEntry
    config: TrainConfig        # each run's, but for its seed, folder and resume (set per run)
    settings: RunSettings
    estimate: Estimate
    reused: Optional[ModelRecord] = None  # done before with these settings: not trained again
    resume: bool = False       # interrupted before with these settings: continued from its last.pt


@dataclass(frozen=True)
class ComparisonPlan:
    """What :func:`plan_comparison` decided and :func:`run_plan` carries out."""

    models: tuple[PlannedModel, ...]
    out_dir: Path
    meta: ComparisonMeta
    data: DataCache
    repeats: int = 1
    latency: LatencySettings = field(default_factory=LatencySettings)
    default_set: Optional[DefaultPlan] = None  # the set chosen for the data when no models were given
    progress: bool = True
    is_main: bool = True   # under torchrun every process trains; rank 0 alone reports
    started: float = 0.0   # time.perf_counter() when planning began: the wall time counts loading too

    @property
    def seeds(self) -> list[int]:
        return self.meta.seeds

    @property
    def estimates(self) -> list[Estimate]:
        return [m.estimate for m in self.models]


@dataclass
class Comparison:
    """What :func:`compare` returns: one record per model, the report paths, the plan and its estimates.
    ``records`` are the same records as ``results.json`` holds them (dicts)."""

    models: list[ModelRecord]
    out_dir: Path
    paths: dict[str, Path]
    plan: Optional[DefaultPlan] = None
    meta: ComparisonMeta = ComparisonMeta()
    estimates: list[Estimate] = field(default_factory=list)

    @property
    def records(self) -> list[dict]:
        return [m.to_dict() for m in self.models]

    @property
    def all_done(self) -> bool:
        return all(m.done for m in self.models)

    def table(self) -> str:
        return markdown_table(self.models)

    def __repr__(self) -> str:
        done = sum(m.done for m in self.models)
        return (f"Comparison({done} of {len(self.models)} models finished on {self.meta.data.source}; "
                f"report in {self.out_dir})\n{self.table()}")

    def _repr_html_(self) -> str:
        """The results table, the verdict and the report's main plots (read back from its folder)."""
        done = sum(m.done for m in self.models)
        facts = {"data": self.meta.data.source, "models": f"{done} of {len(self.models)} finished",
                 "report": str(self.paths.get("report.html", self.out_dir))}
        sentences = "".join(f"<li>{display.escape(s)}</li>" for s in verdict(self.models))
        plots = [path.read_bytes() for path in (self.paths.get(f"plots/{stem}.png") for stem, _ in PLOTS[:4])
                 if path is not None and path.is_file()]
        return display.report_html("Comparison", facts, tables=[results_html(self.models),
                                                                f"<h4>Verdict</h4><ul>{sentences}</ul>"], figures=plots)


def results_html(records: Sequence[ModelRecord]) -> str:
    """The results table of the report (its columns and formats) as an HTML table."""
    header, *body = table_rows(list(records))
    return display.html_table(body, header, align=table_align(records))


def parse_entries(specs: Sequence[str]) -> list[ModelEntry]:
    """Model specs -> entries, every name and argument checked before anything trains."""
    entries, seen = [], set()
    for spec in specs:
        name, args = parse_model_spec(spec)
        # Unknown names raise with suggestions. The comparison ranks by accuracy, MACs per image and
        # latency at an image size, and draws confusion matrices: measures of image classifiers.
        require_task(name, "image", f"compare ranks image classifiers. Train it with `cnnzoo train {name} "
                     f"--data ...`, or see how its layout changes its receptive field and cost with "
                     f"`cnnzoo sweep {name} --layers-per-stack 4,8,10`")
        image_size = args.pop(SPEC_IMAGE_SIZE, None)
        if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                       or image_size < 4):
            raise UserError(f"image_size in {spec!r} must be a whole number of pixels, at least 4")
        weights = args.pop(SPEC_WEIGHTS, None)
        if weights is not None and not isinstance(weights, str):
            raise UserError(f"weights in {spec!r} must be 'torchvision' or a path, got {weights!r}")
        check_model_args(name, args)
        label = spec.strip()
        if label in seen:
            raise UserError(f"model {label!r} is listed twice; give each model once "
                            "(add an override such as ':seed' to a copy if you mean two variants)")
        seen.add(label)
        entries.append(ModelEntry(label, name, args, image_size, weights))
    if not entries:
        raise UserError("no models to compare")
    return entries


def compare(models: Optional[Sequence[str]] = None, *, out_dir: str | Path = "compare", progress: bool = True,
            latency: Optional[LatencySettings] = None, log: Callable[[str], None] = print,
            repeats: int = 1, total_time_s: Optional[float] = None, train: TrainFunction = training.train,
            **options: Any) -> Comparison:
    """Train each of ``models`` on the same split of the data and write a report to ``out_dir``.

    ``models`` are specs such as ``'resnet18'`` or ``'mobilenet_v1:width_mult=0.5,image_size=96'``
    (``image_size``: the side this model trains at; each size is prepared once); with none, a
    representative set sized to the data is chosen (see :mod:`cnnzoo.compare.plan`). ``options`` are
    the training options every model shares (``data``, ``epochs`` or ``time_budget_s``, ``batch_size``,
    ``lr``, ``seed``, ``device``...: the :class:`cnnzoo.training.TrainConfig` fields that ``cnnzoo
    compare`` offers); unset ones take training's own defaults. ``repeats`` trains each model with
    that many seeds (``seed``, ``seed + 1``...; the same split). ``total_time_s`` is a budget for the
    whole comparison, shared equally: each run gets ``total_time_s / (models x repeats)`` as its time
    budget. Before training, every model's time is estimated from a few measured steps and the plan
    printed. Re-running with the same ``out_dir`` reuses the models already done with the same settings.
    ``train`` is the function that trains one run (:func:`cnnzoo.training.train`'s signature).

    The same as :func:`plan_comparison` then :func:`run_plan`.
    """
    plan = plan_comparison(models, out_dir=out_dir, progress=progress, latency=latency, log=log, repeats=repeats,
                           total_time_s=total_time_s, **options)
    return run_plan(plan, train=train, log=log)


def plan_comparison(models: Optional[Sequence[str]] = None, *, out_dir: str | Path = "compare",
                    progress: bool = True, latency: Optional[LatencySettings] = None,
                    log: Callable[[str], None] = print, repeats: int = 1, total_time_s: Optional[float] = None,
                    **options: Any) -> ComparisonPlan:
    """Everything :func:`compare` decides before training (its arguments are :func:`compare`'s): every
    model and option checked, the data loaded, each model's settings resolved and its time estimated,
    the models an earlier run in ``out_dir`` did with the same settings found. Prints the plan."""
    started = time.perf_counter()
    entries = parse_entries(models) if models else None
    repeats = _check_repeats(repeats)
    shared = _shared_config(options, total_time_s)
    is_main = Processes.from_env().is_main
    if is_main:  # a missing logging package fails now, before any data is prepared
        open_loggers(tensorboard=shared.tensorboard, mlflow=shared.mlflow)
    if shared.tta:
        check_flips_allowed(shared.data)
    log = log if is_main else _silent  # under torchrun every process trains; rank 0 alone reports
    # A progress bar in a notebook or on a terminal: redirected to a file each refresh would be a line of its own.
    data = DataCache(shared, progress=display.bars_wanted(progress))
    splits = data.splits(shared.image_size)
    default_set = choose_plan(len(splits.train), splits.image_size)
    if entries is None:
        entries = parse_entries(default_set.models)
        log(plans_table())
        log(default_set.describe())
    # each model's side: its spec's, else --image-size, else its pretrained weights', else the data's
    sizes = [model_image_size(e.model, e.image_size, shared.image_size, e.weights or shared.weights)
             for e in entries]
    shared = replace(shared, image_size=splits.image_size,
                     **_budget(shared, default_set.epochs, total_time_s, runs=len(entries) * repeats))
    latency = latency or LatencySettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = read_results_json(out_dir / "results.json")
    planned = tuple(_plan_model(entry, size, shared, data, previous, repeats, latency.runtime, is_main)
                    for entry, size in zip(entries, sizes))
    table_text = plan_table([p.estimate for p in planned], total_time_s)
    log("plan (estimated from a few measured training steps per model):\n" + table_text)
    chosen = None if models else default_set
    meta = _meta(splits, replace(shared, batch_size=planned[0].settings.config.batch_size), chosen,
                 user_options=set(options), image_sizes=data.image_sizes, repeats=repeats,
                 total_time_s=total_time_s, estimates=[p.estimate for p in planned], plan_text=table_text,
                 models=[e.model for e in entries], model_sizes=[(e.name, size) for e, size in zip(entries, sizes)])
    return ComparisonPlan(planned, out_dir, meta, data, repeats=repeats, latency=latency, default_set=chosen,
                          progress=progress, is_main=is_main, started=started)


def run_plan(plan: ComparisonPlan, *, train: TrainFunction = training.train,
             log: Callable[[str], None] = print) -> Comparison:
    """Train, measure and record each model of ``plan`` in turn with ``train`` (reusing those done
    before), rewriting the report after every one; a model's failure is recorded and the next one
    runs. Ctrl-C: the report of what finished is written, then KeyboardInterrupt re-raised."""
    log = log if plan.is_main else _silent
    records: list[ModelRecord] = []
    n = len(plan.models)
    # In a notebook: the table of finished models grows in one place, the curves of the model in
    # training redraw in another (nothing elsewhere, nothing with progress=False).
    live = plan.progress and plan.is_main and display.in_notebook()
    table, curves = display.LiveOutput(enabled=live), display.LiveCurves(enabled=live)
    for k, planned in enumerate(plan.models, 1):
        if planned.reused is not None:
            log(f"[{k}/{n}] {planned.entry.name}: already done with these settings in {plan.out_dir}; not retrained")
            records.append(planned.reused)
            continue
        seeds = plan.seeds
        log(f"[{k}/{n}] {planned.entry.name}: training"
            + (f" {len(seeds)} times (seeds {seeds[0]}-{seeds[-1]})" if len(seeds) > 1 else "") + " ...")
        try:
            record = _attempt(plan, planned, train, curves)
        except KeyboardInterrupt:
            records.append(_unfinished(planned, "interrupted", "stopped by Ctrl-C while training"))
            records += [_unfinished(p, "interrupted", "not started: the run was interrupted before this model")
                        for p in plan.models[k:]]
            _write(plan, records)
            log(f"[{k}/{n}] interrupted; the report of what finished is in {plan.out_dir}")
            raise
        records.append(record)
        log(_finished_line(k, n, record))
        table.show(results_html(records))
        _write(plan, records)
        _free_memory()
    paths, meta = _write(plan, records)
    _log_report(plan, paths)
    return Comparison(records, plan.out_dir, paths, plan.default_set, meta, plan.estimates)


def _silent(line: str) -> None:
    """The log of a process that does not report (every rank of torchrun but 0)."""


def _check_repeats(repeats: Any) -> int:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise UserError(f"repeats must be a whole number of at least 1, got {repeats!r}")
    return repeats


def _shared_config(options: dict, total_time_s: Optional[float]) -> TrainConfig:
    """The options every model shares: the user's, over training's own defaults. Unknown names and
    bad values are refused now, not once per model after loading the data."""
    offered = {f.name for f in training_options("compare")}
    unknown = sorted(set(options) - offered)
    if unknown:
        raise UserError(f"compare does not take the training option(s) {', '.join(unknown)}; "
                        f"it takes: {', '.join(sorted(offered))}")
    if total_time_s is not None:
        if isinstance(total_time_s, bool) or not isinstance(total_time_s, (int, float)) or not total_time_s > 0:
            raise UserError(f"the total time must be a number of minutes more than zero, got {total_time_s!r}")
        given = [name for name in ("epochs", "time_budget_s") if options.get(name) is not None]
        if given:
            flags = " and ".join("--epochs" if g == "epochs" else "--time-budget" for g in given)
            raise UserError(f"--total-time shares one budget across the models; it does not go with {flags}")
    # checks every value; the model names are checked by parse_entries
    return make_config(model=EVERY_MODEL, **options)


def _budget(shared: TrainConfig, default_epochs: int, total_time_s: Optional[float], runs: int) -> dict:
    """How long each run trains: its share of the total time, else what the user gave, else the
    default set's epochs for this data."""
    if total_time_s is not None:
        return {"time_budget_s": total_time_s / runs}
    if shared.epochs is None and shared.time_budget_s is None:
        return {"epochs": default_epochs}
    return {}


def _plan_model(entry: ModelEntry, size: ImageSize, shared: TrainConfig, data: DataCache, previous: list[dict],
                repeats: int, runtime: str, is_main: bool) -> PlannedModel:
    """One model's config (at ``size``: see :func:`cnnzoo.compare.plan.model_image_size`), resolved
    settings, earlier result and estimated time."""
    splits = data.splits(size.size or shared.image_size)
    config = replace(shared, model=entry.model, model_args=dict(entry.model_args), image_size=splits.image_size,
                     weights=entry.weights or shared.weights)
    task = training.task_for_model(entry.model).load(config, data=splits)
    resolved = training.resolved_config(config, task)
    settings = RunSettings(entry.model, dict(entry.model_args), DataFacts.from_splits(splits), resolved,
                           repeats, runtime)
    reused = find_reusable(previous, entry.name, settings.to_dict())
    if reused is not None:
        estimate = Estimate(entry.name, splits.image_size, repeats=repeats, note="reused")
    elif not is_main:  # only rank 0 prints and reports the plan
        estimate = Estimate(entry.name, splits.image_size, repeats=repeats)
    else:
        # no --epochs: a time budget fills the time, as the trainer will fill it
        estimate = estimate_model(entry.name, resolved, task, repeats, fill=config.epochs is None)
    return PlannedModel(entry, config, settings, estimate,
                        reused=None if reused is None else ModelRecord.from_dict(reused),
                        resume=_was_interrupted(previous, entry.name, settings.to_dict()))


def _was_interrupted(previous: list[dict], name: str, settings: dict) -> bool:
    """An earlier run of this model with the same settings was cut short: continue from its checkpoint."""
    return any(r.get("name") == name and r.get("status") == "interrupted"
               and r.get("settings") == settings for r in previous)


def _write(plan: ComparisonPlan, records: list[ModelRecord]) -> tuple[dict[str, Path], ComparisonMeta]:
    """Every artefact of what is done so far (by rank 0 alone), and the meta it was written with."""
    meta = plan.meta.finished(time.perf_counter() - plan.started)
    return (write_report(plan.out_dir, records, meta) if plan.is_main else {}), meta


def _attempt(plan: ComparisonPlan, planned: PlannedModel, train: TrainFunction,
             curves: display.LiveCurves) -> ModelRecord:
    """Train and measure one model; any failure becomes a "failed" record instead of an exception."""
    try:
        record = _train_and_measure(plan, planned, train, curves)
    except Exception as err:  # noqa: BLE001 - one model's failure must not stop the others
        record = _unfinished(planned, "failed", f"{type(err).__name__}: {err}",
                             traceback.format_exc().splitlines()[-TRACEBACK_LINES:])
    record.settings = planned.settings.to_dict()
    record.estimated_s, record.estimated_epoch_s = planned.estimate.total_s, planned.estimate.epoch_s
    return record


def _train_and_measure(plan: ComparisonPlan, planned: PlannedModel, train: TrainFunction,
                       curves: display.LiveCurves) -> ModelRecord:
    model_dir = plan.out_dir / planned.entry.slug
    if not planned.resume and model_dir.exists():
        # A run of this model with other settings, or one that failed: it is superseded, and the
        # trainer (rightly) refuses to write over a folder that holds a run.
        shutil.rmtree(model_dir)
    first_seed, *other_seeds = plan.seeds
    first = _train_one(plan, planned, train, model_dir, first_seed, curves)  # measured, and its best.pt evaluated
    runs, speeds = [SeedRun.from_result(first_seed, first)], [float(first.images_per_s or 0.0)]
    for seed in other_seeds:
        result = _train_one(plan, planned, train, model_dir, seed, curves)
        runs.append(SeedRun.from_result(seed, result))
        speeds.append(float(result.images_per_s or 0.0))
        del result
    splits = plan.data.splits(planned.config.image_size)  # the first seed's
    record = _record_from_runs(planned.entry, runs, speeds, first.config, splits)
    _measure(record, first.model, splits, first.config, plan.latency)
    if plan.is_main:  # best.pt is written by rank 0 alone
        record.per_class = _per_class(Path(first.out_dir) / "best.pt", splits, planned.config.device)
        if planned.config.tta:
            record.tta_acc = training.evaluate(load_checkpoint(Path(first.out_dir) / "best.pt"), splits, tta=True,
                                               device=planned.config.device or "auto").tta_accuracy
    del first
    return record


def _train_one(plan: ComparisonPlan, planned: PlannedModel, train: TrainFunction, model_dir: Path,
               seed: int, curves: display.LiveCurves) -> TrainResult:
    """One run of ``planned`` with ``seed``, continuing from its last.pt when the plan says so; in a
    notebook, its curves drawn live in ``curves`` (passed only then: a ``train`` may not take it)."""
    run_dir = model_dir if plan.repeats == 1 else model_dir / f"seed-{seed}"
    config = replace(planned.config, seed=seed, out_dir=str(run_dir),
                     resume=planned.resume and (run_dir / "last.pt").exists())
    loggers = _run_loggers(plan, config, f"{planned.entry.slug}-seed{seed}")
    extra: dict[str, Any] = {"loggers": loggers} if loggers else {}
    if curves.enabled:
        curves.restart(f"{planned.entry.name}" + (f", seed {seed}" if plan.repeats > 1 else ""))
        extra["on_epoch_end"] = curves
    result = train(config, data=plan.data.splits(planned.config.image_size, seed), progress=plan.progress, **extra)
    if result.stopped_reason == "interrupted":  # the trainer catches Ctrl-C to save its checkpoint
        raise KeyboardInterrupt
    return result


def _run_loggers(plan: ComparisonPlan, config: TrainConfig, run_name: str) -> RunLoggers:
    """One logged run per model and seed, named ``<model>-seed<seed>``: TensorBoard's all under one
    folder (``<out>/tensorboard`` unless --tensorboard names another), so their curves overlay, and
    MLflow's in an experiment named after the comparison's folder."""
    if not plan.is_main:
        return RunLoggers()
    tensorboard = config.tensorboard
    if tensorboard == "":
        tensorboard = str(plan.out_dir / "tensorboard")
    return open_loggers(tensorboard=tensorboard, mlflow=config.mlflow, run_name=run_name,
                        experiment=plan.out_dir.resolve().name)


def _log_report(plan: ComparisonPlan, paths: dict[str, Path]) -> None:
    """With --mlflow, the comparison's report as one more run ("report") of its experiment."""
    shared = plan.models[0].config if plan.models else None
    if not plan.is_main or shared is None or not shared.mlflow or not paths:
        return
    loggers = open_loggers(mlflow=True, run_name="report", experiment=plan.out_dir.resolve().name)
    loggers.start({"models": ", ".join(p.entry.name for p in plan.models)}, plan.out_dir)
    loggers.finish([path for name, path in paths.items() if not name.startswith("plots/")])


def _record_from_runs(entry: ModelEntry, runs: list[SeedRun], speeds: list[float], config: TrainConfig,
                      splits: DataSplits) -> ModelRecord:
    """The record of a model's runs: accuracies as means over seeds with their intervals, the rest
    from the first seed (see :mod:`cnnzoo.compare.record`)."""
    head = runs[0]
    best, best_std = mean_and_std([r.best_val_acc for r in runs])
    final, _ = mean_and_std([r.final_val_acc for r in runs])
    n_val = len(splits.val) if splits.val is not None else 0
    low, high = interval_over_images_and_seeds(best, n_val, best_std) or (None, None)
    train_accs = [r.final_train_acc for r in runs if r.final_train_acc is not None]
    record = ModelRecord(
        name=entry.name, slug=entry.slug, model=entry.model, model_args=dict(entry.model_args),
        image_size=int(splits.image_size),
        epochs_run=head.epochs_run,
        train_time_s=statistics.fmean(r.train_time_s for r in runs),
        time_per_epoch_s=(sum(r.train_time_s for r in runs) / sum(r.epochs_run for r in runs)
                          if any(r.epochs_run for r in runs) else None),
        train_images_per_s=statistics.fmean(speeds) if speeds else None,
        best_val_acc=best, final_val_acc=final, best_epoch=head.best_epoch,
        stopped_reason=head.stopped_reason, run_dir=head.run_dir,
        train_config=config.to_dict(),
        history=head.history, val_images=n_val, val_acc_low=low, val_acc_high=high,
        best_val_acc_std=best_std, runs=runs,
        final_train_acc=statistics.fmean(train_accs) if train_accs else None,
        planned_epochs=head.planned_epochs)
    tested = [r.test_acc for r in runs if r.test_acc is not None]
    if tested:
        record.test_acc, record.test_acc_std = mean_and_std(tested)
        record.test_images = next(r.test_images for r in runs if r.test_acc is not None)
        record.test_acc_low, record.test_acc_high = interval_over_images_and_seeds(
            record.test_acc, record.test_images, record.test_acc_std) or (None, None)
    return record


def _per_class(best_path: Path, splits: DataSplits, device: str):
    """Per-class accuracy, confusion matrix and the most confident mistakes on the validation split,
    scored by the function behind ``cnnzoo evaluate`` on the same checkpoint."""
    result = training.evaluate(load_checkpoint(best_path), splits, split="val", device=device or "auto")
    assert splits.val is not None  # evaluate refuses a split the data does not have
    return per_class_from_evaluation(result, splits.val.images)


def _measure(record: ModelRecord, model, splits: DataSplits, config: TrainConfig, latency: LatencySettings) -> None:
    """Size, compute and latency of the trained model, at the image size it was trained on, into ``record``."""
    model.eval()
    input_size = (splits.in_chans, splits.image_size, splits.image_size)
    stats = summary(model, input_size=input_size)
    record.params, record.macs, record.weights_mb = int(stats.total_params), int(stats.macs), fp32_megabytes(model)
    batch = int(config.batch_size or 1)
    if latency.runtime != "torch":
        _runtime_latency(record, model, splits, input_size, batch, config.threads, latency)
        return
    device = next(model.parameters()).device.type
    channels_last = bool(config.channels_last)
    # The user's --threads holds for timing too (the trainer restores torch's own count when it ends).
    at_one = measure_latency(model, input_size, batch_size=1, repeats=latency.repeats, warmup=latency.warmup,
                             device=device, channels_last=channels_last, threads=config.threads)
    at_batch = measure_latency(model, input_size, batch_size=batch, repeats=latency.batch_repeats,
                               warmup=1, device=device, channels_last=channels_last, threads=config.threads)
    _record_latency(record, at_one, at_batch, batch)
    record.device = device


def _record_latency(record: ModelRecord, at_one, at_batch, batch: int) -> None:
    record.latency_b1_ms = 1000 * float(at_one.per_image_s)
    record.latency_batch_ms_per_image = 1000 * float(at_batch.per_image_s)
    record.latency_batch_size = batch
    record.inference_images_per_s = float(at_batch.images_per_s)


def _runtime_latency(record: ModelRecord, model, splits: DataSplits, input_size, batch: int,
                     threads: Optional[int], latency: LatencySettings) -> None:
    """Latencies of the trained model exported to ``latency.runtime`` (on the CPU, where those run)."""
    # imported here: the exporters load onnx and onnxruntime (the optional [export] extra), which only
    # --runtime needs
    from cnnzoo.export import prepare_runtime

    # min_agreement=0: an int8 model that agrees with fp32 less than `cnnzoo export` requires is still
    # timed and scored (the report flags its cost) rather than failing the model it came from. An fp32
    # export is held to float rounding as always.
    prepared = prepare_runtime(copy.deepcopy(model).cpu().eval(), latency.runtime, input_size=input_size,
                               threads=threads, calibration=splits, class_names=splits.class_names,
                               min_agreement=0.0)
    _record_latency(record, prepared.latency(1, repeats=latency.repeats, warmup=latency.warmup),
                    prepared.latency(batch, repeats=latency.batch_repeats, warmup=1), batch)
    record.device, record.runtime = "cpu", prepared.label
    if prepared.accuracy is not None:
        record.runtime_accuracy, record.int8_agreement = prepared.accuracy, prepared.verification.top1_agreement


def fp32_megabytes(model) -> float:
    """Parameters and floating-point buffers (BatchNorm statistics) as fp32, in 10^6 bytes."""
    tensors = list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]
    return sum(t.numel() for t in tensors) * 4 / 1e6


def _unfinished(planned: PlannedModel, status: str, reason: str, trace: Optional[list[str]] = None) -> ModelRecord:
    entry = planned.entry
    return ModelRecord(name=entry.name, slug=entry.slug, model=entry.model, model_args=dict(entry.model_args),
                       status=status, reason=reason, traceback="\n".join(trace) if trace else None,
                       settings=planned.settings.to_dict())


def _finished_line(k: int, n: int, record: ModelRecord) -> str:
    if not record.done:
        return f"[{k}/{n}] {record.name}: {record.status.upper()} - {record.reason}"
    test = f"; test {100 * record.test_acc:.1f} %" if record.test_acc is not None else ""
    return (f"[{k}/{n}] {record.name}: done - best val acc {accuracy_text(record)} "
            f"(epoch {record.best_epoch}){test}, {record.total_train_time_s:.1f} s"
            + (f" (estimated {format_duration(record.estimated_s)})" if record.estimated_s else ""))


def _meta(splits: DataSplits, shared: TrainConfig, chosen: Optional[DefaultPlan], user_options: set, *,
          image_sizes: list[int], repeats: int, total_time_s: Optional[float], estimates: list[Estimate],
          plan_text: str, models: list[str], model_sizes: list[tuple[str, ImageSize]]) -> ComparisonMeta:
    """What the report says about the whole comparison: data, shared settings, how they were chosen."""
    return ComparisonMeta(
        data=DataSummary.from_splits(splits, shared.data, image_sizes), settings=shared,
        device=str(pick_device(shared.device)), repeats=repeats, total_time_s=total_time_s,
        estimates=tuple(estimates), estimate_table=plan_text, created=time.strftime("%Y-%m-%d %H:%M:%S"),
        notes=tuple(settings_notes(shared, user_options, repeats, total_time_s, models, model_sizes)),
        chosen=None if chosen is None else ChosenSet(chosen.name, tuple(chosen.models), chosen.epochs,
                                                     chosen.describe(), plans_table()))


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
