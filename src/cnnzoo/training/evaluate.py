"""Evaluate a checkpoint on a data set: accuracy, top-5, per-class precision/recall, confusion matrix."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from cnnzoo.checkpoint import build_model_from_checkpoint, load_checkpoint
from cnnzoo.data import BatchLoader, ImageSet, load_dataset
from cnnzoo.devices import pick_device
from cnnzoo.errors import UserError
from cnnzoo.files import atomic_write_text, save_figure

SPLITS = ("val", "test", "train", "all")


@dataclass
class EvalResult:
    """Metrics of one model on one split. Accuracies, precisions and recalls are fractions."""

    accuracy: float
    top5_accuracy: Optional[float]  # only with more than 5 classes, where it says something
    per_class: list[dict[str, Any]]  # {"class", "precision", "recall", "support"} per class
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted class
    class_names: list[str]
    num_images: int
    data: str
    split: str
    files: dict[str, str]  # what was written: {"confusion_matrix_png": ..., "metrics_json": ...}

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _remap_labels(data, class_names: list[str]) -> np.ndarray:
    """Index map from the data's class order to the checkpoint's; the class sets must match."""
    if list(data.class_names) == list(class_names):
        return np.arange(len(class_names))
    missing = sorted(set(data.class_names) - set(class_names))
    if missing:
        raise UserError(f"the data {data.source!r} has classes the model was not trained on: "
                        f"{', '.join(missing[:10])}; the model knows {', '.join(class_names[:10])}")
    return np.array([class_names.index(c) for c in data.class_names])


def _select_split(data, split: str):
    if split == "all":
        parts = [s for s in (data.train, data.val, data.test) if s is not None]
        return ImageSet(np.concatenate([np.asarray(s.images) for s in parts]),
                        np.concatenate([s.labels for s in parts]))
    chosen = getattr(data, split)
    if chosen is None or len(chosen) == 0:
        raise UserError(f"the data {data.source!r} has no {split!r} split; choose --split from "
                        f"{', '.join(s for s in SPLITS if s == 'all' or getattr(data, s, None) is not None)}")
    return chosen


@torch.inference_mode()
def _predict_all(model: nn.Module, loader) -> tuple[torch.Tensor, torch.Tensor]:
    logits, labels = [], []
    for x, y in loader:
        logits.append(model(x).float().cpu())
        labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)


def evaluate(checkpoint: Union[str, os.PathLike, dict], data=None, *, split: Optional[str] = None,
             batch_size: int = 256, out_dir: Optional[Union[str, os.PathLike]] = None,
             device: str = "auto", progress: bool = False) -> EvalResult:
    """Evaluate a checkpoint (a path, or a loaded checkpoint dict).

    ``data``: ``None`` = the data the model was trained on (its validation split by default); a
    source string or a ``DataSplits`` = that data (all of it by default, as a held-out set).
    Images are prepared with the checkpoint's size, resize mode, mean and std.
    Writes ``confusion_matrix.png`` and ``metrics.json`` to ``out_dir`` (default: beside the
    checkpoint; nothing is written when a dict is given without ``out_dir``).
    """
    # measured: sklearn.metrics takes 0.9 s to import; `cnnzoo train` imports this module and never needs it
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    ckpt_path = None if isinstance(checkpoint, dict) else Path(checkpoint)
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    if split is not None and split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    config, prep = state["config"], state["preprocessing"]
    own_data = data is None
    if isinstance(data, (str, os.PathLike)) or data is None:
        source = config["data"] if own_data else data
        data = load_dataset(source, image_size=prep["image_size"], seed=config.get("seed", 0),
                            val_fraction=config.get("val_fraction", 0.2) if own_data else 0.2,
                            resize=prep.get("resize", "shorter_crop"), cache_dir=config.get("cache_dir"),
                            progress=progress)
    split = split or ("val" if own_data else "all")
    if data.image_size != prep["image_size"]:
        raise UserError(f"the model was trained on {prep['image_size']} px images, the data gives "
                        f"{data.image_size} px; load it with image_size={prep['image_size']}")
    class_names = list(state["class_names"])
    remap = _remap_labels(data, class_names)
    image_set = _select_split(data, split)

    dev = pick_device(device)
    model = build_model_from_checkpoint(state).to(dev)
    loader = BatchLoader(image_set, batch_size, shuffle=False, mean=prep["mean"], std=prep["std"], device=dev)
    logits, labels = _predict_all(model, loader)
    labels = torch.from_numpy(remap)[labels]
    predicted = logits.argmax(1)
    k = len(class_names)
    top5 = None
    if k > 5:
        top5 = (logits.topk(5, dim=1).indices == labels[:, None]).any(1).float().mean().item()
    y_true, y_pred = labels.numpy(), predicted.numpy()
    precision, recall, _, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(k)), zero_division=0)
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(k)))
    result = EvalResult(
        accuracy=float((y_true == y_pred).mean()), top5_accuracy=top5,
        per_class=[{"class": name, "precision": float(p), "recall": float(r), "support": int(s)}
                   for name, p, r, s in zip(class_names, precision, recall, support)],
        confusion_matrix=matrix.tolist(), class_names=class_names, num_images=len(y_true),
        data=str(data.source), split=split, files={})
    if out_dir is None and ckpt_path is not None:
        out_dir = ckpt_path.parent
    if out_dir is not None:
        result.files = _write_outputs(result, Path(out_dir), title=f"{state['model_name']} on {data.source} ({split})")
    return result


def _write_outputs(result: EvalResult, out_dir: Path, title: str) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    png, metrics = out_dir / "confusion_matrix.png", out_dir / "metrics.json"
    plot_confusion_matrix(np.array(result.confusion_matrix), result.class_names, png, title)
    atomic_write_text(metrics, json.dumps({k: v for k, v in result.to_dict().items() if k != "files"}, indent=2) + "\n")
    return {"confusion_matrix_png": str(png), "metrics_json": str(metrics)}


def plot_confusion_matrix(matrix: np.ndarray, class_names: list[str], path: Path, title: str = "") -> None:
    """Counts, true class down the rows, predicted across; cells shaded by row share (recall)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # measured: 0.46 s to import; paid only when the matrix is drawn

    k = len(class_names)
    side = min(max(4.0, 0.45 * k + 2), 30)
    fig, ax = plt.subplots(figsize=(side, side))
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(k)
    ax.set_xticks(ticks, class_names, rotation=90 if k > 10 else 45, ha="right" if k <= 10 else "center")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 30:  # numbers stop being readable beyond that
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
