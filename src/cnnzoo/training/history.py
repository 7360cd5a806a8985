"""The per-epoch record of a run: ``history.csv``, ``history.json`` and the learning-curve PNG."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Optional

from cnnzoo.files import atomic_write_text, save_figure

# Columns in the order a reader wants them; accuracies are fractions in [0, 1].
COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time",
           "train_images_per_s", "elapsed")


def write_history(out_dir: Path, history: list[dict[str, Any]], config: dict[str, Any],
                  extra: Optional[dict[str, Any]] = None) -> None:
    """``history.json`` (the resolved config beside the epochs) and ``history.csv`` (epochs only)."""
    payload = {"config": config, "epochs": history, **(extra or {})}
    atomic_write_text(out_dir / "history.json", json.dumps(payload, indent=2) + "\n")
    lines = [",".join(COLUMNS)]
    for row in history:
        lines.append(",".join(_csv_cell(row.get(c)) for c in COLUMNS))
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


def plot_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train and validation side by side (as in the study notes)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot's import
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], "o-", label=f"train {label}")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], "o-", label=f"validation {label}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_acc.set_ylim(0, 1.02)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
