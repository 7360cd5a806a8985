"""Evaluate a checkpoint on held-out images: accuracy (with its 95 % interval), top-5, per-class
precision/recall, confusion matrix.

Held out means never trained on. Given the data the model was trained on, the default split is that
data's test split if it has one, else its validation split, and the training images are refused;
other data is scored on its test split if it has one, else on all of it. The result always says
which split and how many images.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from cnnzoo import display
from cnnzoo.checkpoint import Checkpoint, load_checkpoint, require_task
from cnnzoo.config import TrainConfig
from cnnzoo.data import BatchLoader, ImageGrid, ImageSet, class_index_map, load_dataset, show_mistakes
from cnnzoo.devices import pick_device
from cnnzoo.errors import UserError
from cnnzoo.files import atomic_write_bytes, atomic_write_text
from cnnzoo.training.tta import check_flips_allowed, predict_tta

SPLITS = ("val", "test", "train", "all")
TRAINED_ON = ("train", "all")  # the splits that hold the images a model was trained on
Z_95 = 1.959963984540054  # two-sided 95 %: the 0.975 quantile of the standard normal


def accuracy_interval(accuracy: float, n: int, z: float = Z_95) -> Optional[tuple[float, float]]:
    """The Wilson score interval (95 % by default) of an accuracy measured on ``n`` images.

    Wilson rather than the normal approximation (accuracy +- z * standard error), which leaves [0, 1]
    and collapses to a point at 0 % or 100 %; Newcombe (1998, Statistics in Medicine 17:857) shows it
    keeps close to its nominal coverage down to small ``n``. ``accuracy`` may be a mean over seeds
    (a non-integer count of correct images). None when there are no images.
    """
    if not n:
        return None
    p, z2 = float(accuracy), z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


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
    accuracy_interval: Optional[tuple[float, float]] = None  # Wilson 95 % over the num_images
    split_reason: str = ""  # why this split: what makes its images held out
    tta_accuracy: Optional[float] = None  # with test-time augmentation (the image and its mirror averaged)
    # Per image, in the split's order (not in to_dict: the metrics are the summary of these).
    labels: Optional[np.ndarray] = field(default=None, repr=False)      # true class (checkpoint's order)
    predicted: Optional[np.ndarray] = field(default=None, repr=False)   # predicted class
    confidence: Optional[np.ndarray] = field(default=None, repr=False)  # softmax probability of `predicted`
    images: Optional[np.ndarray] = field(default=None, repr=False)      # the split's uint8 [N, C, H, W]

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in PER_IMAGE}
        if self.accuracy_interval is not None:
            out["accuracy_interval"] = list(self.accuracy_interval)
        return out

    def describe_split(self) -> str:
        """``'test split of <data>: 10000 images (its test split, ...)'``: what every output starts with."""
        return f"{self.split} split of {self.data}: {self.num_images} images" + (
            f" ({self.split_reason})" if self.split_reason else "")

    def key_figures(self) -> dict[str, str]:
        """Accuracy (with its 95 % interval), top-5 and test-time augmentation's, and what was scored."""
        facts = {"accuracy": _percent(self.accuracy) + (
            f" (95 % interval {_percent(self.accuracy_interval[0])} to {_percent(self.accuracy_interval[1])})"
            if self.accuracy_interval else "")}
        if self.top5_accuracy is not None:
            facts["top-5 accuracy"] = _percent(self.top5_accuracy)
        if self.tta_accuracy is not None:
            facts["accuracy with TTA (flips)"] = _percent(self.tta_accuracy)
        facts["images"] = self.describe_split()
        return facts

    def show_mistakes(self, k: int = 16, columns: Optional[int] = None) -> ImageGrid:
        """The ``k`` most confident mistakes, each titled true -> predicted class (confidence), as the
        compare report's gallery picks them; ends a notebook cell as the picture (``.save(path)``: PNG)."""
        if self.images is None:
            raise UserError("this evaluation kept no images; evaluate the checkpoint again "
                            "(cnnzoo.training.evaluate) to see its mistakes")
        return show_mistakes(self, self.images, k, columns)

    def confusion_figure(self, title: str = ""):
        """The confusion matrix as a matplotlib figure (see :func:`confusion_figure`)."""
        return confusion_figure(np.array(self.confusion_matrix), self.class_names, title)

    def __repr__(self) -> str:
        return "EvalResult(" + ", ".join(f"{k}: {v}" for k, v in self.key_figures().items()) + ")"

    def _repr_html_(self) -> str:
        per_class = display.html_table(
            [(c["class"], _percent(c["precision"]), _percent(c["recall"]), c["support"]) for c in self.per_class],
            ("class", "precision", "recall", "images"), align="lrrr", caption="Per class")
        return display.report_html("Evaluation", self.key_figures(), tables=[per_class],
                                   figures=[self.confusion_figure("Confusion matrix (true down, predicted across)")])


PER_IMAGE = ("labels", "predicted", "confidence", "images")  # EvalResult's arrays: kept in memory, not written


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2f} %"


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
def _predict_all(model: nn.Module, loader, tta: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image's logits (with ``tta``: the log of the image's and its mirror's averaged
    probabilities) and label."""
    logits, labels = [], []
    for x, y in loader:
        logits.append((predict_tta(model, x) if tta else model(x)).float().cpu())
        labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)


def held_out_split(data, trained_on_it: bool, split: Optional[str] = None) -> tuple[str, str]:
    """``(split, why its images are held out)`` for scoring a model on ``data``.

    Default: the test split when the data has one; else, for the data the model was trained on, its
    validation split, and for other data all of it. On the training data, the splits that hold the
    training images (``train``, ``all``) are refused.
    """
    has_test = data.test is not None and len(data.test) > 0
    if split is None:
        if has_test:
            split = "test"
        else:
            split = "val" if trained_on_it else "all"
    if trained_on_it and split in TRAINED_ON:
        raise UserError(f"the model was trained on {data.source!r}: its {split!r} split holds the images it "
                        f"learnt from, so its accuracy there says nothing about new images. Choose --split "
                        f"{'test or val' if has_test else 'val'}, or give other data with --data")
    reasons = {
        "test": "the data's test split: used neither to train nor to choose the epoch",
        "val": ("held out from training, but used to choose the best epoch"
                + ("; the test split is the unbiased number" if has_test else "")) if trained_on_it
        else "the data's validation split",
        "train": "the data's train split (not the data the model was trained on)",
        "all": "every image of data the model was not trained on",
    }
    return split, reasons[split]


def _same_source(data, config: TrainConfig) -> bool:
    """Is ``data`` the data the checkpoint was trained on? Loaders normalise ``source`` (a folder's
    resolved path, a synthetic spec with its size), and training stores that normalised name."""
    return str(data.source) == str(config.data)


def evaluate(checkpoint: Union[str, os.PathLike, Checkpoint], data=None, *, split: Optional[str] = None,
             batch_size: int = 256, out_dir: Optional[Union[str, os.PathLike]] = None,
             device: str = "auto", progress: bool = False, tta: bool = False) -> EvalResult:
    """Evaluate a checkpoint (a path, or a loaded :class:`Checkpoint`) on images it was not trained on.

    ``data``: ``None`` = the data the model was trained on; a source string or a ``DataSplits`` =
    that data. ``split`` (default: see :func:`held_out_split`): the test split when the data has
    one, else the validation split of the training data or all of other data; ``train``/``all`` of
    the training data are refused. The data is loaded with the checkpoint's seed and validation share,
    so the training data's validation split is the one training held out. Images are prepared with
    the checkpoint's size, resize mode, mean and std.
    Writes ``confusion_matrix.png`` and ``metrics.json`` to ``out_dir`` (default: beside the
    checkpoint; nothing is written when a record is given without ``out_dir``).
    ``tta``: also score with test-time augmentation (flips; ``tta_accuracy``), refused for data whose
    classes a mirror image changes.
    """
    ckpt_path = None if isinstance(checkpoint, Checkpoint) else Path(checkpoint)
    state = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    require_task(state, "image", ckpt_path or state.model_name,
                 "A sequence model is scored by its validation loss in history.json; try cnnzoo forecast or generate.")
    if split is not None and split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if tta:
        check_flips_allowed(state.config.data, *([] if data is None else [getattr(data, "source", data)]))
    data = _held_out_data(state, data, progress)
    split, reason = held_out_split(data, _same_source(data, state.config), split)
    class_names = list(state.image.class_names)
    remap = class_index_map(data.class_names, class_names, f"the data {data.source!r}")

    dev = pick_device(device)
    model = state.build_model().to(dev)
    scored = _select_split(data, split)
    loader = BatchLoader(scored, batch_size, shuffle=False, preprocessing=state.image.preprocessing,
                         device=dev)
    logits, labels = _predict_all(model, loader)
    result = _scores(logits, torch.from_numpy(remap)[labels], class_names)
    result.images = scored.images  # in the loader's order (no shuffle): what show_mistakes draws
    if tta:
        tta_logits, _ = _predict_all(model, loader, tta=True)
        result.tta_accuracy = float((tta_logits.argmax(1) == torch.from_numpy(remap)[labels]).float().mean())
    result.data, result.split, result.split_reason = str(data.source), split, reason
    if out_dir is None and ckpt_path is not None:
        out_dir = ckpt_path.parent
    if out_dir is not None:
        result.files = _write_outputs(result, Path(out_dir), title=f"{state.model_name} on {data.source} ({split})")
    return result


def _held_out_data(state: Checkpoint, data, progress: bool):
    """``data`` (the checkpoint's own when None) loaded as the checkpoint's model takes it."""
    config, prep = state.config, state.image.preprocessing
    if isinstance(data, (str, os.PathLike)) or data is None:
        # The checkpoint's seed and validation share for any data: for the training data they give
        # back the validation split training held out; for other data they change nothing.
        # The run's own CSV label list is read as training read it (its validation list, its columns).
        own = dict(val_source=config.val_data, path_column=config.path_column,
                   label_column=config.label_column) if data is None else {}
        data = load_dataset(config.data if data is None else data, image_size=prep.image_size, seed=config.seed,
                            val_fraction=config.val_fraction, resize=prep.resize, cache_dir=config.cache_dir,
                            progress=progress, **own)
    if data.image_size != prep.image_size:
        raise UserError(f"the model was trained on {prep.image_size} px images, the data gives "
                        f"{data.image_size} px; load it with image_size={prep.image_size}")
    return data


def _scores(logits: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> EvalResult:
    """Accuracy, top-5, per-class precision and recall and the confusion matrix of ``logits`` against
    ``labels`` (the split's name and data are the caller's to fill in)."""
    # imported here: scikit-learn's metrics are slow to import, and `cnnzoo train` imports this
    # module without ever needing them
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    confidence, predicted = torch.softmax(logits, 1).max(1)
    k = len(class_names)
    top5 = None
    if k > 5:
        top5 = (logits.topk(5, dim=1).indices == labels[:, None]).any(1).float().mean().item()
    y_true, y_pred = labels.numpy(), predicted.numpy()
    precision, recall, _, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(k)), zero_division=0)
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(k)))
    accuracy = float((y_true == y_pred).mean())
    return EvalResult(
        accuracy=accuracy, top5_accuracy=top5,
        per_class=[{"class": name, "precision": float(p), "recall": float(r), "support": int(s)}
                   for name, p, r, s in zip(class_names, precision, recall, support)],
        confusion_matrix=matrix.tolist(), class_names=class_names, num_images=len(y_true),
        data="", split="", files={}, accuracy_interval=accuracy_interval(accuracy, len(y_true)),
        labels=y_true, predicted=y_pred, confidence=confidence.numpy())


def _write_outputs(result: EvalResult, out_dir: Path, title: str) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    png, metrics = out_dir / "confusion_matrix.png", out_dir / "metrics.json"
    plot_confusion_matrix(np.array(result.confusion_matrix), result.class_names, png, title)
    atomic_write_text(metrics, json.dumps({k: v for k, v in result.to_dict().items() if k != "files"}, indent=2) + "\n")
    return {"confusion_matrix_png": str(png), "metrics_json": str(metrics)}


def plot_confusion_matrix(matrix: np.ndarray, class_names: list[str], path: Path, title: str = "") -> None:
    """``confusion_matrix.png`` beside the checkpoint: :func:`confusion_figure` as a file."""
    atomic_write_bytes(path, display.figure_png(confusion_figure(matrix, class_names, title)))


def confusion_figure(matrix: np.ndarray, class_names: list[str], title: str = ""):
    """Counts, true class down the rows, predicted across; cells shaded by row share (recall). Made
    outside pyplot (:func:`cnnzoo.display.new_figure`): drawing it never switches a notebook's backend."""
    k = len(class_names)
    side = min(max(4.0, 0.45 * k + 2), 30)
    fig = display.new_figure(side, side)
    ax = fig.add_subplot()
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
    return fig
