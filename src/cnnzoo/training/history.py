"""The per-epoch record of a run: ``history.csv``, ``history.json`` and the learning-curve PNG."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Optional, Sequence

from cnnzoo.checkpoint import EpochRecord
from cnnzoo.config import TrainConfig
from cnnzoo.display import curves_figure, figure_png
from cnnzoo.files import atomic_write_bytes, atomic_write_text

# Image classification's columns, in the order a reader wants them; accuracies are fractions in
# [0, 1]. Other tasks pass their own (Task.history_columns).
COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time",
           "train_images_per_s", "elapsed")


def write_history(out_dir: Path, history: list[EpochRecord], config: TrainConfig, unit: str = "image",
                  extra: Optional[dict[str, Any]] = None, columns: Sequence[str] = COLUMNS) -> None:
    """``history.json`` (the resolved config beside the epochs) and ``history.csv`` (epochs only,
    in the task's ``columns``). ``unit`` names the throughput column (``train_<unit>s_per_s``)."""
    rows = [record.to_dict(unit) for record in history]
    payload = {"config": config.to_dict(), "epochs": rows, **(extra or {})}
    atomic_write_text(out_dir / "history.json", json.dumps(payload, indent=2) + "\n")
    lines = [",".join(columns)]
    for row in rows:
        lines.append(",".join(_csv_cell(row.get(c)) for c in columns))
    atomic_write_text(out_dir / "history.csv", "\n".join(lines) + "\n")


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_history_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def plot_curves(history: list[EpochRecord], path: Path, title: str = "", metrics: Sequence[str] = ("loss", "acc"),
                limits: Optional[dict[str, tuple[float, float]]] = None) -> None:
    """The run folder's ``curves.png``: each metric per epoch, train and validation side by side (as in
    the study notes), drawn by :func:`cnnzoo.display.curves_figure` like the curves a notebook shows.
    The figure is made outside pyplot, so drawing it never switches a notebook's matplotlib backend."""
    atomic_write_bytes(path, figure_png(curves_figure(history, metrics, title, limits)))
