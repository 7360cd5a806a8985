"""Train several models on the same data, measure each, and keep the report current after every one.

The loop is deliberately plain: load the data once, then for each model either reuse its earlier
result (same settings), or train it, measure it and record it - catching a failure so the others
still run - and rewrite every artefact. Ctrl-C marks the model in training as interrupted, writes the
report, and re-raises so the command exits with 130.
"""
from __future__ import annotations

import gc
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from cnnzoo import training
from cnnzoo.compare.plan import DefaultPlan, choose_plan, plans_table
from cnnzoo.compare.report import markdown_table, write_report
from cnnzoo.compare.results import find_reusable, jsonable, model_slug, read_results_json
from cnnzoo.data import load_dataset
from cnnzoo.errors import UserError
from cnnzoo.profiling import measure_latency, summary
from cnnzoo.registry import check_model_args, get_model_info, parse_model_spec
from cnnzoo.training import TrainConfig
from cnnzoo.training.config import FAMILY_TRAINING, MIN_STEPS_PER_EPOCH, make_config, training_options
from cnnzoo.training.distributed import Processes

TRACEBACK_LINES = 25  # how much of a failure's traceback the report keeps


@dataclass(frozen=True)
class ModelEntry:
    """One model of the comparison: ``name`` is its spec as written (``'resnet18:norm=group'``)."""

    name: str
    model: str
    model_args: dict

    @property
    def slug(self) -> str:
        return model_slug(self.name)


@dataclass
class LatencySettings:
    """How long to spend timing each trained model (kept short: it is a few percent of the run)."""

    repeats: int = 10
    warmup: int = 3
    batch_repeats: int = 3  # at the training batch size each repeat is already many images


@dataclass
class Comparison:
    """What :func:`compare` returns: the records (as in ``results.json``), the report paths, the plan."""

    records: list[dict]
    out_dir: Path
    paths: dict[str, Path]
    plan: Optional[DefaultPlan] = None
    meta: dict = field(default_factory=dict)

    @property
    def all_done(self) -> bool:
        return all(r.get("status") == "done" for r in self.records)

    def table(self) -> str:
        return markdown_table(self.records)


def parse_entries(specs: Sequence[str]) -> list[ModelEntry]:
    """Model specs -> entries, every name and argument checked before anything trains."""
    entries, seen = [], set()
    for spec in specs:
        name, args = parse_model_spec(spec)
        get_model_info(name)  # unknown model: UserError with suggestions
        check_model_args(name, args)
        label = spec.strip()
        if label in seen:
            raise UserError(f"model {label!r} is listed twice; give each model once "
                            "(add an override such as ':seed' to a copy if you mean two variants)")
        seen.add(label)
        entries.append(ModelEntry(label, name, args))
    if not entries:
        raise UserError("no models to compare")
    return entries


def compare(models: Optional[Sequence[str]] = None, *, out_dir: str | Path = "compare", progress: bool = True,
            latency: Optional[LatencySettings] = None, log: Callable[[str], None] = print,
            **options: Any) -> Comparison:
    """Train each of ``models`` on the same split of the data and write a report to ``out_dir``.

    ``models`` are specs such as ``'resnet18'`` or ``'mobilenet_v1:width_mult=0.5'``; with none, a
    representative set sized to the data is chosen (see :mod:`cnnzoo.compare.plan`). ``options`` are
    the training options every model shares (``data``, ``epochs`` or ``time_budget_s``, ``batch_size``,
    ``lr``, ``seed``, ``device``...: the :class:`cnnzoo.training.TrainConfig` fields that ``cnnzoo
    compare`` offers); unset ones take training's own defaults. Re-running with the same ``out_dir``
    reuses the models already done with the same settings.
    """
    entries = parse_entries(models) if models else None
    shared = _shared_settings(options)
    if not Processes.from_env().is_main:  # under torchrun every process trains; rank 0 alone reports
        log, write = (lambda line: None), (lambda *args: {})
    else:
        write = write_report
    splits = load_dataset(shared["data"], image_size=shared["image_size"], val_fraction=shared["val_fraction"],
                          seed=shared["seed"], cache_dir=shared["cache_dir"], resize=shared["resize"],
                          progress=progress)
    plan = choose_plan(len(splits.train), splits.image_size)
    if entries is None:
        entries = parse_entries(plan.models)
        log(plans_table())
        log(plan.describe())
    if shared["epochs"] is None and shared["time_budget_s"] is None:
        shared["epochs"] = plan.epochs
    shared["image_size"] = splits.image_size
    resolved = {e.name: _resolved_settings(e, splits, shared) for e in entries}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = read_results_json(out_dir / "results.json")
    first = next(iter(resolved.values()))
    meta = _meta(splits, {**shared, "batch_size": first["batch_size"]}, plan if models is None else None,
                 user_options=set(options))

    records: list[dict] = []
    paths: dict[str, Path] = {}
    n = len(entries)
    for k, entry in enumerate(entries, 1):
        settings = resolved[entry.name]
        reused = find_reusable(previous, entry.name, settings)
        if reused is not None:
            log(f"[{k}/{n}] {entry.name}: already done with these settings in {out_dir}; not retrained")
            records.append(reused)
            continue
        log(f"[{k}/{n}] {entry.name}: training ...")
        try:
            record = _attempt(entry, settings, splits, shared, out_dir, progress,
                              latency or LatencySettings(), _was_interrupted(previous, entry, settings))
        except KeyboardInterrupt:
            records.append(_unfinished(entry, settings, "interrupted", "stopped by Ctrl-C while training"))
            records += [_unfinished(e, resolved[e.name], "interrupted",
                                    "not started: the run was interrupted before this model")
                        for e in entries[k:]]
            write(out_dir, records, meta)
            log(f"[{k}/{n}] interrupted; the report of what finished is in {out_dir}")
            raise
        records.append(record)
        log(_finished_line(k, n, record))
        paths = write(out_dir, records, meta)
        _free_memory()
    paths = write(out_dir, records, meta)
    return Comparison(records, out_dir, paths, plan if models is None else None, meta)


def _shared_settings(options: dict) -> dict:
    """The options every model shares: the user's, over training's own defaults (asked of
    TrainConfig's declarations, not repeated here). Unknown names and bad values are refused now,
    not once per model after loading the data."""
    offered = {f.name: f.default for f in training_options("compare")}
    unknown = sorted(set(options) - set(offered))
    if unknown:
        raise UserError(f"compare does not take the training option(s) {', '.join(unknown)}; "
                        f"it takes: {', '.join(sorted(offered))}")
    shared = {**offered, **options}
    make_config(model="any", **shared)  # checks every value; the model names are checked by parse_entries
    return shared


def _resolved_settings(entry: ModelEntry, splits, shared: dict) -> dict:
    """Everything that decides this model's numbers - the data and every training setting resolved
    by training itself (batch size, the family's optimizer...) - so a re-run retrains exactly when
    any of it changed."""
    config = TrainConfig(model=entry.model, model_args=dict(entry.model_args), **shared)
    task = training.task_for_model(entry.model).load(config, data=splits)
    resolved = training.resolved_config(config, task).to_dict()
    for per_run in ("model", "model_args", "data", "out_dir", "resume"):
        resolved.pop(per_run)
    return jsonable({
        "model": entry.model, "model_args": entry.model_args,
        "data": {"source": str(splits.source), "train_images": len(splits.train),
                 "val_images": len(splits.val) if splits.val is not None else 0,
                 "classes": list(splits.class_names), "image_size": splits.image_size},
        **resolved,
    })


def _was_interrupted(previous: list[dict], entry: ModelEntry, settings: dict) -> bool:
    """An earlier run of this model with the same settings was cut short: continue from its checkpoint."""
    return any(r.get("name") == entry.name and r.get("status") == "interrupted"
               and r.get("settings") == jsonable(settings) for r in previous)


def _attempt(entry: ModelEntry, settings: dict, *args) -> dict:
    """Train and measure one model; any failure becomes a "failed" record instead of an exception."""
    try:
        record = _train_and_measure(entry, *args)
    except Exception as err:  # noqa: BLE001 - one model's failure must not stop the others
        record = _unfinished(entry, settings, "failed", f"{type(err).__name__}: {err}",
                             traceback.format_exc().splitlines()[-TRACEBACK_LINES:])
    record["settings"] = jsonable(settings)
    return record


def _train_and_measure(entry: ModelEntry, splits, shared: dict, out_dir: Path,
                       progress: bool, latency: LatencySettings, resume: bool) -> dict:
    run_dir = out_dir / entry.slug
    resume = resume and (run_dir / "last.pt").exists()
    if not resume and run_dir.exists():
        # A run of this model with other settings, or one that failed: it is superseded, and the
        # trainer (rightly) refuses to write over a folder that holds a run.
        shutil.rmtree(run_dir)
    config = TrainConfig(model=entry.model, model_args=dict(entry.model_args), out_dir=str(run_dir),
                         resume=resume, **shared)
    # training.train looked up at call time: tests replace it to record what each model is given
    result = training.train(config, data=splits, progress=progress)
    if result.stopped_reason == "interrupted":  # the trainer catches Ctrl-C to save its checkpoint
        raise KeyboardInterrupt
    record = _record_from_result(entry, result)
    record.update(_measure(result.model, splits, result.config, latency))
    del result
    return record


def _record_from_result(entry: ModelEntry, result) -> dict:
    history = [dict(h) for h in result.history]
    epochs_run = len(history)
    return {
        "name": entry.name, "slug": entry.slug, "model": entry.model, "model_args": entry.model_args,
        "status": "done", "reason": None, "traceback": None,
        "epochs_run": epochs_run,
        "train_time_s": float(result.train_time_s),
        "time_per_epoch_s": float(result.train_time_s) / epochs_run if epochs_run else None,
        "train_images_per_s": _float_or_none(getattr(result, "images_per_s", None)),
        "best_val_acc": float(result.best_val_acc),
        "final_val_acc": float(result.final_val_acc),
        "best_epoch": int(result.best_epoch),
        "stopped_reason": result.stopped_reason,
        "run_dir": str(result.out_dir),
        "train_config": jsonable(_config_dict(result.config)),
        "history": jsonable(history),
    }


def _config_dict(config) -> dict:
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def _float_or_none(x) -> Optional[float]:
    return None if x is None else float(x)


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


def fp32_megabytes(model) -> float:
    """Parameters and floating-point buffers (BatchNorm statistics) as fp32, in 10^6 bytes."""
    tensors = list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]
    return sum(t.numel() for t in tensors) * 4 / 1e6


def _unfinished(entry: ModelEntry, settings: dict, status: str, reason: str,
                trace: Optional[list[str]] = None) -> dict:
    return {"name": entry.name, "slug": entry.slug, "model": entry.model, "model_args": entry.model_args,
            "status": status, "reason": reason, "traceback": "\n".join(trace) if trace else None,
            "settings": jsonable(settings)}


def _finished_line(k: int, n: int, record: dict) -> str:
    if record["status"] != "done":
        return f"[{k}/{n}] {record['name']}: {record['status'].upper()} - {record['reason']}"
    return (f"[{k}/{n}] {record['name']}: done - best val acc {100 * record['best_val_acc']:.1f} % "
            f"(epoch {record['best_epoch']}), {record['train_time_s']:.1f} s")


def _meta(splits, shared: dict, plan: Optional[DefaultPlan], user_options: set) -> dict:
    """What the report says about the whole comparison: data, shared settings, how they were chosen."""
    batch_note = "" if "batch_size" in user_options else (
        f" (sized to the data: at least {MIN_STEPS_PER_EPOCH} optimizer steps per epoch)")
    meta = {
        "title": "cnnzoo comparison",
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "data": {"source": str(shared["data"]), "num_classes": len(splits.class_names),
                 "class_names": list(splits.class_names), "train_images": len(splits.train),
                 "val_images": len(splits.val) if splits.val is not None else 0,
                 "image_size": splits.image_size},
        "settings": jsonable(shared),
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
    if plan is not None:
        meta["plan"] = {"name": plan.name, "models": list(plan.models), "epochs": plan.epochs,
                        "note": plan.describe(), "table": plans_table()}
    return meta


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
