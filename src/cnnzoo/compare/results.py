"""The ``results.json`` / ``results.csv`` files: one record per model, as
:meth:`cnnzoo.compare.record.ModelRecord.to_dict` writes it (see that module for the fields).

``settings`` is everything that decides a model's result (model and its arguments, data and image
size, seed, epochs or time budget, repeats, training options). A re-run skips a model whose record
is ``"done"`` with equal settings, and retrains it when any of them changed.

Versions: 1 had the flat fields only; 2 adds intervals, repeats (``runs``), the test split,
per-class numbers and the plan's estimate. A version-1 file is read as is (the new fields absent),
and its models are reused when their settings are unchanged.
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Optional

from cnnzoo.errors import UserError
from cnnzoo.files import atomic_write_text

RESULTS_FORMAT = "cnnzoo-compare"
RESULTS_VERSION = 2

# Columns of results.csv, in order: the flat numbers of each record (the history is in results.json).
CSV_FIELDS = (
    "name", "status", "model", "model_args", "params", "macs", "weights_mb",
    "epochs_run", "train_time_s", "time_per_epoch_s", "train_images_per_s",
    "latency_b1_ms", "latency_batch_ms_per_image", "latency_batch_size",
    "best_val_acc", "final_val_acc", "best_epoch", "stopped_reason", "reason",
    "image_size", "val_images", "val_acc_low", "val_acc_high", "best_val_acc_std", "final_train_acc",
    "test_acc", "test_acc_std", "test_images", "test_acc_low", "test_acc_high",
    "estimated_s", "planned_epochs", "tta_acc",
)


def model_slug(spec: str) -> str:
    """A folder name for a model spec: ``'mobilenet_v1:width_mult=0.5'`` -> ``'mobilenet_v1-width_mult-0.5'``."""
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", spec).strip("-.")
    return slug or "model"


def jsonable(value: Any) -> Any:
    """``value`` as it will read back from JSON (tuples become lists, numpy scalars plain numbers).

    Settings are compared after this round trip so a tuple written last run equals the list read now.
    """
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def write_results_json(path: Path, records: list[dict], meta: dict) -> None:
    """``results.json``: ``meta`` (data, shared settings, plan) and one record per model."""
    doc = {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, **meta, "models": records}
    atomic_write_text(path, json.dumps(doc, indent=2, default=_json_default) + "\n")


def read_results_json(path: Path) -> list[dict]:
    """The records of an earlier run in ``path``; an empty list when there is none.

    A file that is not ours is an error the user must resolve (we will not overwrite it).
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path} exists but cannot be read as a cnnzoo comparison ({err}). "
                        "Move it away or choose another --out folder.") from None
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
        raise UserError(f"{path} is not a cnnzoo comparison file (no \"format\": \"{RESULTS_FORMAT}\"). "
                        "Move it away or choose another --out folder.")
    if doc.get("version", 1) > RESULTS_VERSION:
        raise UserError(f"{path} was written by a newer cnnzoo (results version {doc.get('version')}, this "
                        f"one reads up to {RESULTS_VERSION}). Upgrade, or choose another --out folder.")
    return list(doc.get("models", []))


def csv_text(records: list[dict]) -> str:
    """``results.csv``: one row per model, the columns of :data:`CSV_FIELDS`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = {k: record.get(k) for k in CSV_FIELDS}
        row["model_args"] = json.dumps(record.get("model_args") or {}, sort_keys=True)
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def find_reusable(previous: list[dict], name: str, settings: dict) -> Optional[dict]:
    """The earlier ``"done"`` record of ``name`` trained with exactly ``settings``, if any."""
    wanted = jsonable(settings)
    for record in previous:
        if record.get("name") == name and record.get("status") == "done" \
                and record.get("settings") == wanted:
            return record
    return None
