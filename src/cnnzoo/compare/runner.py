"""Train several models on the same data, measure each, and keep the report current after every one.

The loop is deliberately plain: load the data once per image size, estimate every model's time from
a few measured steps and print the plan, then for each model either reuse its earlier result (same
settings), or train it (once per seed), measure and evaluate it and record it - catching a failure
so the others still run - and rewrite every artefact. Ctrl-C marks the model in training as
interrupted, writes the report, and re-raises so the command exits with 130.
"""
from __future__ import annotations

import copy
import gc
import shutil
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from cnnzoo import training
from cnnzoo.checkpoint import load_checkpoint
from cnnzoo.compare.analysis import accuracy_text
from cnnzoo.compare.estimate import Estimate, estimate_model, format_duration, plan_table
from cnnzoo.compare.gallery import per_class_from_evaluation
from cnnzoo.compare.plan import DefaultPlan, choose_plan, plans_table
from cnnzoo.compare.record import ModelRecord, SeedRun, interval_over_images_and_seeds, mean_and_std
from cnnzoo.compare.report import markdown_table, write_report
from cnnzoo.compare.results import find_reusable, jsonable, model_slug, read_results_json
from cnnzoo.data import load_dataset
from cnnzoo.errors import UserError
from cnnzoo.profiling import measure_latency, summary
from cnnzoo.registry import check_model_args, parse_model_spec, require_task
from cnnzoo.training import TrainConfig
from cnnzoo.training.config import FAMILY_TRAINING, MIN_STEPS_PER_EPOCH, make_config, training_options
from cnnzoo.training.distributed import Processes

TRACEBACK_LINES = 25  # how much of a failure's traceback the report keeps
SPEC_IMAGE_SIZE = "image_size"  # spec keys that are not model arguments: the side it trains at,
SPEC_WEIGHTS = "weights"        # and the weights it starts from (resnet18:weights=torchvision)


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


@dataclass
class Comparison:
    """What :func:`compare` returns: one record per model, the report paths, the plan and its estimates.
    ``records`` are the same records as ``results.json`` holds them (dicts)."""

    models: list[ModelRecord]
    out_dir: Path
    paths: dict[str, Path]
    plan: Optional[DefaultPlan] = None
    meta: dict = field(default_factory=dict)
    estimates: list[Estimate] = field(default_factory=list)

    @property
    def records(self) -> list[dict]:
        return [m.to_dict() for m in self.models]

    @property
    def all_done(self) -> bool:
        return all(m.done for m in self.models)

    def table(self) -> str:
        return markdown_table(self.models)


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
            repeats: int = 1, total_time_s: Optional[float] = None, **options: Any) -> Comparison:
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
    """
    entries = parse_entries(models) if models else None
    repeats = _check_repeats(repeats)
    shared = _shared_settings(options, total_time_s)
    is_main = Processes.from_env().is_main
    if not is_main:  # under torchrun every process trains; rank 0 alone reports
        log, write = (lambda line: None), (lambda *args: {})
    else:
        write = write_report
    started = time.perf_counter()
    # A progress bar only on a terminal: redirected to a file each refresh would be a line of its own.
    data_progress = progress and sys.stderr.isatty()
    loaded: dict[tuple[int, int], Any] = {}  # (image size, seed) -> splits

    def splits_for(size: Optional[int], seed: Optional[int] = None):
        """The data at ``size`` as a run with ``seed`` sees it - each loaded once. The seed picks the
        validation split of built-in and synthetic data (not of folders, split by file names), so a
        repeat's checkpoint describes its own data exactly and ``cnnzoo evaluate`` finds the images
        it held out."""
        seed = shared["seed"] if seed is None else seed
        if (size, seed) not in loaded:
            splits = load_dataset(shared["data"], image_size=size, val_fraction=shared["val_fraction"], seed=seed,
                                  cache_dir=shared["cache_dir"], resize=shared["resize"], progress=data_progress)
            loaded[(size, seed)] = loaded[(splits.image_size, seed)] = splits
        return loaded[(size, seed)]

    splits = splits_for(shared["image_size"])
    plan = choose_plan(len(splits.train), splits.image_size)
    if entries is None:
        entries = parse_entries(plan.models)
        log(plans_table())
        log(plan.describe())
    if shared["epochs"] is None and shared["time_budget_s"] is None and total_time_s is None:
        shared["epochs"] = plan.epochs
    if total_time_s is not None:
        shared["time_budget_s"] = total_time_s / (len(entries) * repeats)
    shared["image_size"] = splits.image_size
    data_of = {e.name: splits_for(e.image_size or splits.image_size) for e in entries}
    shared_of = {e.name: {**shared, "image_size": data_of[e.name].image_size,
                          **({"weights": e.weights} if e.weights else {})} for e in entries}
    resolved = {e.name: _resolved_settings(e, data_of[e.name], shared_of[e.name], repeats) for e in entries}
    runtime = (latency or LatencySettings()).runtime
    if runtime != "torch":  # measured elsewhere: an earlier result timed in PyTorch is not this one
        for settings in resolved.values():
            settings["latency_runtime"] = runtime
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = read_results_json(out_dir / "results.json")
    reusable = {e.name: find_reusable(previous, e.name, resolved[e.name]) for e in entries}

    def estimate(e: ModelEntry) -> Estimate:
        if reusable[e.name] is not None:
            return Estimate(e.name, data_of[e.name].image_size, repeats=repeats, note="reused")
        if not is_main:  # only rank 0 prints and reports the plan
            return Estimate(e.name, data_of[e.name].image_size, repeats=repeats)
        return estimate_model(e, data_of[e.name], shared_of[e.name], repeats)

    estimates = [estimate(e) for e in entries]
    estimate_of = {e.name: est for e, est in zip(entries, estimates)}
    table_text = plan_table(estimates, total_time_s)
    log("plan (estimated from a few measured training steps per model):\n" + table_text)
    first = next(iter(resolved.values()))
    meta = _meta(splits, {**shared, "batch_size": first["batch_size"]}, plan if models is None else None,
                 user_options=set(options), image_sizes=sorted({d.image_size for d in loaded.values()}),
                 repeats=repeats, total_time_s=total_time_s, estimates=estimates, plan_text=table_text)

    records: list[ModelRecord] = []
    paths: dict[str, Path] = {}
    n = len(entries)
    for k, entry in enumerate(entries, 1):
        settings = resolved[entry.name]
        reused = reusable[entry.name]
        if reused is not None:
            log(f"[{k}/{n}] {entry.name}: already done with these settings in {out_dir}; not retrained")
            records.append(ModelRecord.from_dict(reused))
            continue
        log(f"[{k}/{n}] {entry.name}: training"
            + (f" {repeats} times (seeds {shared['seed']}-{shared['seed'] + repeats - 1})" if repeats > 1 else "")
            + " ...")
        try:
            size = data_of[entry.name].image_size
            record = _attempt(entry, settings, lambda seed, size=size: splits_for(size, seed),
                              shared_of[entry.name], out_dir, progress,
                              latency or LatencySettings(), _was_interrupted(previous, entry, settings),
                              repeats, is_main)
        except KeyboardInterrupt:
            records.append(_unfinished(entry, settings, "interrupted", "stopped by Ctrl-C while training"))
            records += [_unfinished(e, resolved[e.name], "interrupted",
                                    "not started: the run was interrupted before this model")
                        for e in entries[k:]]
            write(out_dir, records, _finish_meta(meta, started))
            log(f"[{k}/{n}] interrupted; the report of what finished is in {out_dir}")
            raise
        estimate = estimate_of[entry.name]
        record.estimated_s, record.estimated_epoch_s = estimate.total_s, estimate.epoch_s
        records.append(record)
        log(_finished_line(k, n, record))
        paths = write(out_dir, records, _finish_meta(meta, started))
        _free_memory()
    paths = write(out_dir, records, _finish_meta(meta, started))
    return Comparison(records, out_dir, paths, plan if models is None else None, meta, estimates)


def _check_repeats(repeats: Any) -> int:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise UserError(f"repeats must be a whole number of at least 1, got {repeats!r}")
    return repeats


def _shared_settings(options: dict, total_time_s: Optional[float]) -> dict:
    """The options every model shares: the user's, over training's own defaults (asked of
    TrainConfig's declarations, not repeated here). Unknown names and bad values are refused now,
    not once per model after loading the data."""
    offered = {f.name: f.default for f in training_options("compare")}
    unknown = sorted(set(options) - set(offered))
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
    shared = {**offered, **options}
    make_config(model="any", **shared)  # checks every value; the model names are checked by parse_entries
    return shared


def _resolved_settings(entry: ModelEntry, splits, shared: dict, repeats: int) -> dict:
    """Everything that decides this model's numbers - the data and every training setting resolved
    by training itself (batch size, the family's optimizer...) - so a re-run retrains exactly when
    any of it changed."""
    config = TrainConfig(model=entry.model, model_args=dict(entry.model_args), **shared)
    task = training.task_for_model(entry.model).load(config, data=splits)
    resolved = training.resolved_config(config, task).to_dict()
    for per_run in ("model", "model_args", "data", "out_dir", "resume"):
        resolved.pop(per_run)
    settings = {
        "model": entry.model, "model_args": entry.model_args,
        "data": {"source": str(splits.source), "train_images": len(splits.train),
                 "val_images": len(splits.val) if splits.val is not None else 0,
                 "classes": list(splits.class_names), "image_size": splits.image_size},
        **resolved,
    }
    if repeats > 1:  # absent for one seed, so results written before repeats existed are still reused
        settings["repeats"] = repeats
    return jsonable(settings)


def _was_interrupted(previous: list[dict], entry: ModelEntry, settings: dict) -> bool:
    """An earlier run of this model with the same settings was cut short: continue from its checkpoint."""
    return any(r.get("name") == entry.name and r.get("status") == "interrupted"
               and r.get("settings") == settings for r in previous)


def _attempt(entry: ModelEntry, settings: dict, *args) -> ModelRecord:
    """Train and measure one model; any failure becomes a "failed" record instead of an exception."""
    try:
        record = _train_and_measure(entry, *args)
    except Exception as err:  # noqa: BLE001 - one model's failure must not stop the others
        record = _unfinished(entry, settings, "failed", f"{type(err).__name__}: {err}",
                             traceback.format_exc().splitlines()[-TRACEBACK_LINES:])
    record.settings = settings
    return record


def _train_and_measure(entry: ModelEntry, data_for: Callable[[int], Any], shared: dict, out_dir: Path,
                       progress: bool, latency: LatencySettings, resume: bool, repeats: int,
                       is_main: bool) -> ModelRecord:
    model_dir = out_dir / entry.slug
    if not resume and model_dir.exists():
        # A run of this model with other settings, or one that failed: it is superseded, and the
        # trainer (rightly) refuses to write over a folder that holds a run.
        shutil.rmtree(model_dir)
    runs, speeds, first = [], [], None
    for k in range(repeats):
        seed = shared["seed"] + k
        run_dir = model_dir if repeats == 1 else model_dir / f"seed-{seed}"
        config = TrainConfig(model=entry.model, model_args=dict(entry.model_args), out_dir=str(run_dir),
                             resume=resume and (run_dir / "last.pt").exists(), **{**shared, "seed": seed})
        # training.train looked up at call time: tests replace it to record what each model is given
        result = training.train(config, data=data_for(seed), progress=progress)
        if result.stopped_reason == "interrupted":  # the trainer catches Ctrl-C to save its checkpoint
            raise KeyboardInterrupt
        runs.append(SeedRun.from_result(seed, result))
        speeds.append(float(result.images_per_s or 0.0))
        if first is None:
            first = result  # its weights are measured and its best.pt evaluated
        else:
            del result
    splits = data_for(shared["seed"])  # the first seed's: its weights are measured, its best.pt evaluated
    record = _record_from_runs(entry, runs, speeds, first.config, splits)
    for key, value in _measure(first.model, splits, first.config, latency).items():
        setattr(record, key, value)
    if is_main:  # best.pt is written by rank 0 alone
        record.per_class = _per_class(Path(first.out_dir) / "best.pt", splits, shared)
    del first
    return record


def _record_from_runs(entry: ModelEntry, runs: list[SeedRun], speeds: list[float], config,
                      splits) -> ModelRecord:
    """The record of a model's runs: accuracies as means over seeds with their intervals, the rest
    from the first seed (see :mod:`cnnzoo.compare.record`)."""
    head = runs[0]
    best, best_std = mean_and_std([r.best_val_acc for r in runs])
    final, _ = mean_and_std([r.final_val_acc for r in runs])
    n_val = len(splits.val)
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
        train_config=config.to_dict() if hasattr(config, "to_dict") else dict(config),
        history=head.history, val_images=n_val, val_acc_low=low, val_acc_high=high,
        best_val_acc_std=best_std, runs=runs,
        final_train_acc=statistics.fmean(train_accs) if train_accs else None,
        planned_epochs=head.planned_epochs)
    tested = [r for r in runs if r.test_acc is not None]
    if tested:
        record.test_acc, record.test_acc_std = mean_and_std([r.test_acc for r in tested])
        record.test_images = tested[0].test_images
        record.test_acc_low, record.test_acc_high = interval_over_images_and_seeds(
            record.test_acc, record.test_images, record.test_acc_std) or (None, None)
    return record


def _per_class(best_path: Path, splits, shared: dict):
    """Per-class accuracy, confusion matrix and the most confident mistakes on the validation split,
    scored by the function behind ``cnnzoo evaluate`` on the same checkpoint."""
    result = training.evaluate(load_checkpoint(best_path), splits, split="val", device=shared.get("device") or "auto")
    return per_class_from_evaluation(result, splits.val.images)


def _measure(model, splits, config, latency: LatencySettings) -> dict:
    """Size, compute and latency of the trained model, at the image size it was trained on."""
    model.eval()
    input_size = (splits.in_chans, splits.image_size, splits.image_size)
    device = next(model.parameters()).device.type
    stats = summary(model, input_size=input_size)
    channels_last = bool(getattr(config, "channels_last", False))
    batch = int(getattr(config, "batch_size", 1) or 1)
    # The user's --threads holds for timing too (the trainer restores torch's own count when it ends).
    threads = getattr(config, "threads", None)
    if latency.runtime != "torch":
        return {**_sizes(model, stats), **_runtime_latency(model, splits, input_size, batch, threads, latency)}
    at_one = measure_latency(model, input_size, batch_size=1, repeats=latency.repeats, warmup=latency.warmup,
                             device=device, channels_last=channels_last, threads=threads)
    at_batch = measure_latency(model, input_size, batch_size=batch, repeats=latency.batch_repeats,
                               warmup=1, device=device, channels_last=channels_last, threads=threads)
    return {
        "params": int(stats.total_params),
        "macs": int(stats.macs),
        "weights_mb": fp32_megabytes(model),
        "latency_b1_ms": 1000 * float(at_one.per_image_s),
        "latency_batch_ms_per_image": 1000 * float(at_batch.per_image_s),
        "latency_batch_size": batch,
        "inference_images_per_s": float(at_batch.images_per_s),
        "device": device,
    }


def _sizes(model, stats) -> dict:
    return {"params": int(stats.total_params), "macs": int(stats.macs), "weights_mb": fp32_megabytes(model)}


def _runtime_latency(model, splits, input_size, batch: int, threads, latency: LatencySettings) -> dict:
    """Latencies of the trained model exported to ``latency.runtime`` (on the CPU, where those run)."""
    # measured: cnnzoo.export takes 0.23 s to import (onnx, onnxruntime); only --runtime pays it
    from cnnzoo.export import prepare_runtime

    # min_agreement=0: an int8 model that agrees with fp32 less than `cnnzoo export` requires is still
    # timed and scored (the report flags its cost) rather than failing the model it came from. An fp32
    # export is held to float rounding as always.
    prepared = prepare_runtime(copy.deepcopy(model).cpu().eval(), latency.runtime, input_size=input_size,
                               threads=threads, calibration=splits, class_names=splits.class_names,
                               min_agreement=0.0)
    at_one = prepared.latency(1, repeats=latency.repeats, warmup=latency.warmup)
    at_batch = prepared.latency(batch, repeats=latency.batch_repeats, warmup=1)
    return {"latency_b1_ms": 1000 * float(at_one.per_image_s),
            "latency_batch_ms_per_image": 1000 * float(at_batch.per_image_s), "latency_batch_size": batch,
            "inference_images_per_s": float(at_batch.images_per_s), "device": "cpu", "runtime": prepared.label,
            "runtime_accuracy": prepared.accuracy and {**prepared.accuracy,
                                                       "agreement": prepared.verification.top1_agreement}}


def fp32_megabytes(model) -> float:
    """Parameters and floating-point buffers (BatchNorm statistics) as fp32, in 10^6 bytes."""
    tensors = list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]
    return sum(t.numel() for t in tensors) * 4 / 1e6


def _unfinished(entry: ModelEntry, settings: dict, status: str, reason: str,
                trace: Optional[list[str]] = None) -> ModelRecord:
    return ModelRecord(name=entry.name, slug=entry.slug, model=entry.model, model_args=dict(entry.model_args),
                       status=status, reason=reason, traceback="\n".join(trace) if trace else None,
                       settings=settings)


def _finished_line(k: int, n: int, record: ModelRecord) -> str:
    if not record.done:
        return f"[{k}/{n}] {record.name}: {record.status.upper()} - {record.reason}"
    test = f"; test {100 * record.test_acc:.1f} %" if record.test_acc is not None else ""
    return (f"[{k}/{n}] {record.name}: done - best val acc {accuracy_text(record)} "
            f"(epoch {record.best_epoch}){test}, {record.total_train_time_s:.1f} s"
            + (f" (estimated {format_duration(record.estimated_s)})" if record.estimated_s else ""))


def _meta(splits, shared: dict, plan: Optional[DefaultPlan], user_options: set, *, image_sizes: list[int],
          repeats: int, total_time_s: Optional[float], estimates: list[Estimate], plan_text: str) -> dict:
    """What the report says about the whole comparison: data, shared settings, how they were chosen."""
    batch_note = "" if "batch_size" in user_options else (
        f" (sized to the data: at least {MIN_STEPS_PER_EPOCH} optimizer steps per epoch)")
    known = [e.total_s for e in estimates if e.total_s is not None]
    meta = {
        "title": "cnnzoo comparison",
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "data": {"source": str(shared["data"]), "num_classes": len(splits.class_names),
                 "class_names": list(splits.class_names), "train_images": len(splits.train),
                 "val_images": len(splits.val) if splits.val is not None else 0,
                 "test_images": len(splits.test) if splits.test is not None else 0,
                 "image_size": splits.image_size, "image_sizes": image_sizes},
        "settings": jsonable(shared),
        "repeats": repeats,
        "total_time_s": total_time_s,
        "estimate": {"table": plan_text, "total_s": sum(known) if known else None,
                     "models": jsonable([{"name": e.name, "epochs": e.epochs, "epoch_s": e.epoch_s,
                                          "total_s": e.total_s, "note": e.note} for e in estimates])},
        "notes": [
            f"Batch size {shared['batch_size']} for every model{batch_note}.",
            "Per-family training defaults, used unless --optimizer or --lr is given: "
            + "; ".join(f"{family}: " + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in options.items())
                        for family, options in FAMILY_TRAINING.items())
            + ". Other families use cnnzoo train's defaults (each run's resolved settings are in "
              "results.json, train_config).",
        ],
    }
    if repeats > 1:
        meta["notes"].append(f"Each model was trained {repeats} times, with seeds {shared['seed']} to "
                             f"{shared['seed'] + repeats - 1}: a seed sets initialisation, batch order and "
                             "augmentation, and the validation split of data split by seed (built-in, synthetic, "
                             "CIFAR; a folder's split is fixed by its file names). Every model sees the same "
                             "split for the same seed. Accuracies are means +- standard deviations over the "
                             "seeds; per-class numbers and mistakes are the first seed's.")
    if total_time_s is not None:
        meta["notes"].append(f"Total budget {format_duration(total_time_s)} of training, shared equally: "
                             f"{format_duration(shared['time_budget_s'])} per run, each run's schedule "
                             "fitted to the epochs that budget holds.")
    if plan is not None:
        meta["plan"] = {"name": plan.name, "models": list(plan.models), "epochs": plan.epochs,
                        "note": plan.describe(), "table": plans_table()}
    return meta


def _finish_meta(meta: dict, started: float) -> dict:
    """``meta`` with the wall-clock time so far (everything: loading, estimating, training, measuring)."""
    return {**meta, "wall_time_s": time.perf_counter() - started}


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
