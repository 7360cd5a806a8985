"""The training loop: ``train(model="resnet18")`` -> :class:`TrainResult`.

One epoch = one pass over the training split in an order fixed by ``(seed, epoch)``, then one pass
over the validation split, then ``last.pt`` (and ``best.pt`` when validation accuracy improved) and
the history files. Because the data order, augmentation and learning rate are functions of
``(seed, epoch, step)`` and the checkpoint carries model, optimizer and RNG states, a run resumed
from ``last.pt`` ends with exactly the weights an uninterrupted run would have.
"""
from __future__ import annotations

import contextlib
import copy
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.errors import UserError
from cnnzoo import checkpoint as ckpt
from cnnzoo.training.config import TrainConfig, describe, make_config, resolve_config
from cnnzoo.training.history import plot_curves, write_history
from cnnzoo.training.optim import LRSchedule, build_optimizer

AUX_LOSS_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers (Szegedy et al. 2015, section 6)
NAN_CHECK_EVERY = 25   # on GPU, steps between finiteness checks (each check waits for the GPU)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. ``last.pt``/``best.pt`` still hold the last good epoch."""


@dataclass
class TrainResult:
    """What a run produced. ``model`` holds the best weights (highest validation accuracy)."""

    history: list[dict[str, Any]]
    best_val_acc: float
    best_epoch: int
    final_val_acc: float
    train_time_s: float
    out_dir: str
    model: nn.Module
    stopped_reason: str  # completed | early_stopping | time_budget | interrupted
    config: TrainConfig
    images_per_s: float  # training throughput over all epochs of this call (forward + backward)
    class_names: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------- set-up

def make_deterministic(device: torch.device) -> None:
    """Ask CUDA for deterministic kernels, so a resumed GPU run matches an uninterrupted one bit for
    bit. CPU kernels are deterministic for a fixed thread count already."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for but PyTorch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def default_out_dir(model: str, data: str) -> Path:
    """``runs/<model>-<data>``, with ``-2``, ``-3``... appended rather than overwrite a run."""
    data_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(data).rstrip("/\\")).name) or "data"
    base = Path("runs") / f"{model}-{data_name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _load_data(config: TrainConfig, progress: bool):
    from cnnzoo.data import load_dataset

    return load_dataset(config.data, image_size=config.image_size, val_fraction=config.val_fraction,
                        seed=config.seed, cache_dir=config.cache_dir, resize=config.resize,
                        progress=progress)


def _model_args_for(config: TrainConfig, data) -> dict:
    """The user's overrides, plus the class count and channels the data imposes."""
    args = dict(config.model_args)
    for key, needed in (("num_classes", data.num_classes), ("in_chans", data.train.images.shape[1])):
        if args.get(key) is None:
            args[key] = needed
        elif args[key] != needed:
            raise UserError(f"{key}={args[key]} was given but the data {data.source!r} has {needed}; "
                            f"leave {key} unset and it follows the data")
    return args


def _make_loader(image_set, config: TrainConfig, data, device, *, train: bool, epoch_seed: int = 0):
    from cnnzoo.data import BatchLoader

    return BatchLoader(image_set, config.batch_size if train else max(config.batch_size, 256),
                       shuffle=train, augment=config.augment if train else "none", seed=epoch_seed,
                       drop_last=train, mean=data.mean, std=data.std,
                       channels_last=config.channels_last, device=device)


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _compute_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, smoothing: float):
    """Cross-entropy (plus GoogLeNet's auxiliary losses when its aux heads are on) and the logits."""
    if getattr(model, "aux_logits", False) and hasattr(model, "forward_train"):
        logits, aux = model.forward_train(x)
        loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        for aux_logits in aux:
            loss = loss + AUX_LOSS_WEIGHT * F.cross_entropy(aux_logits, y, label_smoothing=smoothing)
        return loss, logits
    logits = model(x)
    return F.cross_entropy(logits, y, label_smoothing=smoothing), logits


# ----------------------------------------------------------------------------------- one epoch

class _NonFinite(Exception):
    def __init__(self, step: int, loss: float):
        super().__init__(step, loss)
        self.step, self.loss = step, loss


def _train_one_epoch(model, loader, optimizer, schedule, scaler, config, device, bar) -> dict:
    """One pass over ``loader``: loss, accuracy and throughput. Raises ``_NonFinite`` on a NaN/inf
    loss before the step that would spread it is taken (on GPU, within ``NAN_CHECK_EVERY`` steps)."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    finite = torch.ones((), device=device, dtype=torch.bool)
    seen, lr = 0, schedule.lr_at(schedule.step)
    check_every = 1 if device.type == "cpu" else NAN_CHECK_EVERY  # a CPU check costs nothing
    start = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        lr = schedule.apply(optimizer)
        with _autocast(device, config.amp):
            loss, logits = _compute_loss(model, x, y, config.label_smoothing)
        finite &= torch.isfinite(loss.detach())
        if (i + 1) % check_every == 0 and not finite.item():
            raise _NonFinite(schedule.step, loss.item())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach().float() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        if bar is not None:
            bar.update(len(y))
            if i % 10 == 0 or i == len(loader) - 1:
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.3f}",
                                img_s=f"{seen / elapsed:.0f}", lr=f"{lr:.3g}", refresh=False)
    if not finite.item():
        raise _NonFinite(schedule.step, float("nan"))
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_time = time.perf_counter() - start
    seen = max(seen, 1)
    return {"train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen, "lr": lr,
            "train_time": train_time, "train_images_per_s": seen / max(train_time, 1e-9),
            "train_images": seen}


@torch.inference_mode()
def evaluate_loader(model: nn.Module, loader, device: torch.device, amp: bool = False) -> dict:
    """Mean cross-entropy and accuracy of ``model`` over ``loader`` (no label smoothing)."""
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for x, y in loader:
        with _autocast(device, amp):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        n += len(y)
    n = max(n, 1)
    return {"val_loss": loss_sum.item() / n, "val_acc": correct.item() / n}


# ------------------------------------------------------------------------------ checkpointing

def _preprocessing(data, resize: str) -> dict:
    # Everything predict needs to feed one image exactly as training did. "resize" is one of
    # cnnzoo.data.RESIZE_MODES ("shorter_crop": shorter side to image_size, then a centre crop).
    return {"image_size": int(data.image_size), "mean": [float(v) for v in data.mean],
            "std": [float(v) for v in data.std], "resize": resize}


def _checkpoint_dict(*, config, model_args, model, data, history, epoch, best_val_acc,
                     optimizer=None, schedule=None, scaler=None, complete=True) -> dict:
    return {
        "format": ckpt.FORMAT,
        "version": ckpt.VERSION,
        "model_name": config.model,
        "model_args": dict(model_args),
        "model_state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "class_names": list(data.class_names),
        "preprocessing": _preprocessing(data, config.resize),
        "config": config.to_dict(),
        "history": copy.deepcopy(history),
        "epoch": epoch,  # epochs completed
        "epoch_complete": complete,
        "best_val_acc": best_val_acc,
        # deep copies: the file is written on another thread while training changes the originals
        "optimizer_state": copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None,
        "scheduler_state": schedule.state_dict() if schedule is not None else None,
        "scaler_state": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng_state": ckpt.get_rng_state(),
    }


def _resume_state(config: TrainConfig, out_dir: Path) -> dict:
    path = out_dir / "last.pt"
    if not path.is_file():
        raise UserError(f"cannot resume: {str(path)!r} does not exist. Run without --resume to start "
                        "a new run, or point --out at the folder of the run to continue")
    state = ckpt.load_checkpoint(path)
    if state["model_name"] != config.model:
        raise UserError(f"cannot resume: {str(path)!r} is a run of {state['model_name']!r}, "
                        f"not {config.model!r}")
    return state


def _config_for_resume(requested: TrainConfig, saved: dict, explicit: set[str]) -> TrainConfig:
    """The saved run's resolved config; only options that do not change the computation so far
    (more epochs, patience, time budget, device, threads) may be changed on resume."""
    resumed = TrainConfig.from_dict(saved)
    changeable = {"epochs", "patience", "time_budget_s", "device", "threads", "cache_dir"}
    updates = {k: getattr(requested, k) for k in changeable & explicit if getattr(requested, k) is not None}
    resumed = TrainConfig.from_dict({**resumed.to_dict(), **updates, "resume": True,
                                     "out_dir": requested.out_dir})
    return resumed


# ------------------------------------------------------------------------------------- train

def train(config: Optional[TrainConfig] = None, *, data=None, progress: bool = True,
          on_epoch_end: Optional[Callable[[dict], None]] = None, **fields_: Any) -> TrainResult:
    """Train a registered model and return its history and best weights.

    ``train(model="resnet18")`` or ``train(TrainConfig(...), epochs=5)``. ``data`` takes a
    ``DataSplits`` already loaded (to train many models on one split); otherwise ``config.data`` is
    loaded. ``on_epoch_end(record)`` is called after each epoch, its checkpoints queued for writing.
    Raises :class:`TrainingDiverged` on a NaN/inf loss, :class:`UserError` for bad options.
    """
    if isinstance(data, (str, os.PathLike)):  # train(model=..., data="digits") names the source
        fields_["data"], data = os.fspath(data), None
    explicit = set(fields_) | ({f for f, v in vars(config).items() if v is not None} if config else set())
    config = make_config(config, **fields_)
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(config, data, progress, on_epoch_end, explicit)
    finally:
        torch.set_num_threads(threads_before)  # a library call leaves the process as it found it


@dataclass
class _Run:
    """Everything one run mutates, with the steps of an epoch as methods."""

    config: TrainConfig
    data: Any
    model_args: dict
    model: nn.Module
    device: torch.device
    out_dir: Path
    train_loader: Any
    val_loader: Any
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: Any
    history: list = field(default_factory=list)
    best_val_acc: float = -1.0
    best_epoch: int = 0
    best_state: Optional[dict] = None
    images_trained: int = 0  # by this call, for its throughput
    time_training: float = 0.0
    writer: ckpt.BackgroundWriter = field(default_factory=ckpt.BackgroundWriter)

    def checkpoint(self) -> dict:
        """A snapshot of the epochs so far, with what resuming needs (optimizer, schedule, RNG...)."""
        return _checkpoint_dict(
            config=self.config, model_args=self.model_args, model=self.model, data=self.data,
            history=self.history, epoch=len(self.history), best_val_acc=self.best_val_acc,
            optimizer=self.optimizer, schedule=self.schedule, scaler=self.scaler)

    def save_epoch(self, improved: bool) -> None:
        """Queue ``best.pt`` (when improved; weights only, for using the model) and ``last.pt``."""
        last = self.checkpoint()
        jobs = []
        if improved:  # the same snapshot without the resume-only parts (no second copy of the weights)
            best = {**last, "optimizer_state": None, "scheduler_state": None, "scaler_state": None}
            jobs.append((best, self.out_dir / "best.pt"))
        jobs.append((last, self.out_dir / "last.pt"))
        self.writer.submit(jobs)

    def restore(self, saved: dict) -> None:
        """Continue from a ``last.pt``: weights, optimizer, schedule position, history, RNG."""
        self.model.load_state_dict(saved["model_state"])
        self.optimizer.load_state_dict(saved["optimizer_state"])
        self.schedule.load_state_dict(saved["scheduler_state"])
        if saved.get("scaler_state") and self.scaler.is_enabled():
            self.scaler.load_state_dict(saved["scaler_state"])
        self.history = list(saved["history"])
        self.best_val_acc = float(saved["best_val_acc"])
        self.best_epoch = max((r["epoch"] for r in self.history if r["val_acc"] == self.best_val_acc), default=0)
        best_path = self.out_dir / "best.pt"
        self.best_state = ckpt.load_checkpoint(best_path)["model_state"] if best_path.is_file() else None
        ckpt.set_rng_state(saved["rng_state"])

    def run_epoch(self, epoch: int, progress: bool) -> dict:
        """Train one pass, validate, and return the epoch's history record."""
        epoch_start = time.perf_counter()
        self.train_loader.set_epoch(epoch)
        bar = _progress_bar(progress, epoch, self.config.epochs, len(self.train_loader) * self.config.batch_size)
        try:
            stats = _train_one_epoch(self.model, self.train_loader, self.optimizer, self.schedule, self.scaler,
                                     self.config, self.device, bar)
        finally:
            if bar is not None:
                bar.close()
        stats.update(evaluate_loader(self.model, self.val_loader, self.device, self.config.amp))
        self.images_trained += stats["train_images"]
        self.time_training += stats["train_time"]
        epoch_time = time.perf_counter() - epoch_start
        record = {"epoch": epoch + 1, **{k: stats[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr")},
                  "epoch_time": epoch_time, "train_images_per_s": stats["train_images_per_s"],
                  "elapsed": (self.history[-1]["elapsed"] if self.history else 0.0) + epoch_time}
        self.history.append(record)
        return record

    def keep_if_best(self, record: dict) -> bool:
        """Remember the weights of a new best validation accuracy (``save_epoch`` writes best.pt)."""
        if record["val_acc"] <= self.best_val_acc:
            return False
        self.best_val_acc, self.best_epoch = record["val_acc"], record["epoch"]
        self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return True


def _prepare(config: TrainConfig, data, explicit: set, progress: bool) -> tuple[_Run, Optional[dict]]:
    """Check the output folder, load data, build and configure everything; restore when resuming."""
    out_dir = Path(config.out_dir) if config.out_dir else None
    saved = None
    if config.resume:
        if out_dir is None:
            raise UserError("--resume needs --out: the folder of the run to continue")
        saved = _resume_state(config, out_dir)
        config = _config_for_resume(config, saved["config"], explicit)
    elif out_dir is not None and (out_dir / "last.pt").exists():
        raise UserError(f"{str(out_dir)!r} already holds a run (last.pt). Add --resume to continue it, "
                        "or choose another --out so it is not overwritten")

    device = pick_device(config.device)
    if config.deterministic:
        make_deterministic(device)
    if data is None:
        data = _load_data(config, progress)
    else:
        config = TrainConfig.from_dict({**config.to_dict(), "data": data.source})
    if data.val is None or len(data.val) == 0:
        raise UserError(f"data {data.source!r} has no validation split; use a val_fraction above 0")
    if saved is not None and saved["preprocessing"]["image_size"] != data.image_size:
        raise UserError(f"cannot resume: the run used {saved['preprocessing']['image_size']} px images, "
                        f"the data now gives {data.image_size} px")
    out_dir = out_dir or default_out_dir(config.model, config.data)
    out_dir.mkdir(parents=True, exist_ok=True)

    from cnnzoo.factory import create_model

    torch.manual_seed(config.seed)  # model initialisation is a function of the seed
    model_args = _model_args_for(config, data)
    model = create_model(config.model, **model_args)
    if saved is None:
        config = resolve_config(config, num_train=len(data.train), image_size=data.image_size, model=model,
                                device_type=device.type)
    config = TrainConfig.from_dict({**config.to_dict(), "out_dir": str(out_dir), "model_args": model_args})
    model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)

    train_loader = _make_loader(data.train, config, data, device, train=True, epoch_seed=config.seed)
    steps_per_epoch = len(train_loader)
    run = _Run(
        config=config, data=data, model_args=model_args, model=model, device=device, out_dir=out_dir,
        train_loader=train_loader, val_loader=_make_loader(data.val, config, data, device, train=False),
        optimizer=build_optimizer(model, config.optimizer, config.lr, config.weight_decay),
        schedule=LRSchedule(config.schedule, config.lr, total_steps=config.epochs * steps_per_epoch,
                            warmup_steps=round(config.warmup_epochs * steps_per_epoch)),
        scaler=torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda"))
    if saved is not None:
        run.restore(saved)
    return run, saved


def _train(config: TrainConfig, data, progress: bool, on_epoch_end, explicit: set) -> TrainResult:
    log = print if progress else (lambda *a, **k: None)
    run, saved = _prepare(config, data, explicit, progress)
    config, out_dir = run.config, run.out_dir
    start_epoch = len(run.history)
    if saved is not None:
        log(f"resuming {out_dir / 'last.pt'} after epoch {start_epoch} of {config.epochs}")
    log(describe(config))
    log(f"data: {run.data.summary()}; device {run.device}; writing to {out_dir}")
    write_history(out_dir, run.history, config.to_dict())

    stopped_reason = "completed"
    run_start = time.perf_counter()
    epochs_since_best = len(run.history) - run.best_epoch
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, config.epochs):
            if _out_of_time(config, run_start, run.history[start_epoch:]):
                stopped_reason = "time_budget"
                break
            record = run.run_epoch(epoch, progress)
            improved = run.keep_if_best(record)
            epochs_since_best = 0 if improved else epochs_since_best + 1
            run.save_epoch(improved)
            write_history(out_dir, run.history, config.to_dict())
            log(_epoch_line(record, config.epochs, improved))
            if on_epoch_end is not None:
                on_epoch_end(record)
            if config.patience and epochs_since_best >= config.patience:
                stopped_reason = "early_stopping"
                log(f"early stopping: no better validation accuracy for {config.patience} epochs")
                break
        run.writer.wait()
    except _NonFinite as err:
        run.writer.wait()  # the last good epoch's checkpoint finishes; nothing of the bad one is saved
        _finish_files(out_dir, run.history, config, run.best_epoch, "diverged")
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

    _finish_files(out_dir, run.history, config, run.best_epoch, stopped_reason)
    return _result(run, stopped_reason, time.perf_counter() - run_start)


def _report_interruption(log, run: _Run, epoch: int) -> None:
    # last.pt is written only at epoch ends, so it holds the last completed epoch: resuming from
    # it is exact, where saving the half-done epoch would not be.
    if run.history:
        log(f"\ninterrupted during epoch {epoch + 1}: {run.out_dir / 'last.pt'} holds the last completed "
            f"epoch ({len(run.history)}); the partial epoch is not saved. Continue with: cnnzoo train "
            f"{run.config.model} --out {run.out_dir} --resume", file=sys.stderr)
    else:
        log("\ninterrupted before the first epoch completed: nothing to resume from", file=sys.stderr)


def _result(run: _Run, stopped_reason: str, wall_time: float) -> TrainResult:
    if run.best_state is not None:
        run.model.load_state_dict(run.best_state)
    run.model.eval()
    return TrainResult(
        history=run.history, best_val_acc=max(run.best_val_acc, 0.0), best_epoch=run.best_epoch,
        final_val_acc=run.history[-1]["val_acc"] if run.history else 0.0,
        train_time_s=wall_time, out_dir=str(run.out_dir), model=run.model,
        stopped_reason=stopped_reason, config=run.config,
        images_per_s=run.images_trained / run.time_training if run.time_training else 0.0,
        class_names=list(run.data.class_names))


def _out_of_time(config: TrainConfig, run_start: float, this_call: list[dict]) -> bool:
    """Stop before an epoch that would end past the budget (estimated from the epochs so far)."""
    if not config.time_budget_s or not this_call:
        return False
    elapsed = time.perf_counter() - run_start
    mean_epoch = sum(r["epoch_time"] for r in this_call) / len(this_call)
    return elapsed + mean_epoch > config.time_budget_s


def _finish_files(out_dir: Path, history: list[dict], config: TrainConfig, best_epoch: int,
                  stopped_reason: str) -> None:
    write_history(out_dir, history, config.to_dict(),
                  {"best_epoch": best_epoch, "stopped_reason": stopped_reason})
    if history:
        plot_curves(history, out_dir / "curves.png", title=f"{config.model} on {config.data}")


def _progress_bar(progress: bool, epoch: int, epochs: int, total_images: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total_images, desc=f"epoch {epoch + 1}/{epochs}", unit="img", leave=False,
                dynamic_ncols=True)


def _epoch_line(r: dict, epochs: int, improved: bool) -> str:
    return (f"epoch {r['epoch']:>3}/{epochs}  train loss {r['train_loss']:.4f} acc {r['train_acc']:.4f}  "
            f"val loss {r['val_loss']:.4f} acc {r['val_acc']:.4f}  lr {r['lr']:.3g}  "
            f"{r['train_images_per_s']:.0f} img/s  {r['epoch_time']:.1f}s" + ("  *best" if improved else ""))
