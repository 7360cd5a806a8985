"""One typed record per model: what the runner builds and results, analysis, plots and report read.

A :class:`ModelRecord` is written to ``results.json`` by :meth:`ModelRecord.to_dict` (the one place
it becomes JSON-safe) and read back by :meth:`ModelRecord.from_dict`; the two are inverses, so a
reused model reads back exactly as it was written. Its ``status`` is one of:

- ``"done"``: trained and measured; every number is filled in.
- ``"failed"``: training or measuring raised; ``reason`` and ``traceback`` say why.
- ``"interrupted"``: Ctrl-C arrived while this model trained (or before it started).

With ``--repeats N`` a model is trained N times (seeds ``seed`` .. ``seed + N - 1``, the same split):
``runs`` holds each seed's numbers and history; the headline accuracies (best, final, train, test)
are means over the seeds with their standard deviations; epochs, best epoch, ``history`` and the
per-class numbers are the first seed's (its ``best.pt`` is the one evaluated).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional, Sequence, Union

from cnnzoo.compare.results import jsonable, model_slug
from cnnzoo.errors import UserError
from cnnzoo.export.verify import Int8Accuracy
from cnnzoo.registry import get_model_info
from cnnzoo.training.evaluate import accuracy_interval

SEED_SPREAD = 2.0  # with repeats, an interval is at least mean +- this many standard deviations across seeds


def _from_dict(cls, d: dict):
    """``cls(**d)`` keeping only the fields ``cls`` has (a newer file's extra keys are ignored)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class SeedRun:
    """One training of one model (one seed)."""

    seed: int
    best_val_acc: float
    final_val_acc: float
    best_epoch: int
    epochs_run: int
    train_time_s: float
    stopped_reason: str
    run_dir: str
    history: list[dict] = field(default_factory=list)  # EpochRecord.to_dict rows, as history.json holds them
    planned_epochs: Optional[int] = None        # the length of the schedule the run set out on
    estimated_epoch_s: Optional[float] = None   # the trainer's own estimate (time-budgeted runs)
    test_acc: Optional[float] = None            # best weights on the data's test split, when it has one
    test_loss: Optional[float] = None
    test_images: Optional[int] = None

    @property
    def final_train_acc(self) -> Optional[float]:
        last = self.history[-1] if self.history else {}
        return last.get("train_acc")

    @classmethod
    def from_result(cls, seed: int, result) -> "SeedRun":
        """From a :class:`cnnzoo.training.TrainResult`."""
        test = result.test_metrics or {}
        return cls(seed=seed, best_val_acc=float(result.best_val_acc), final_val_acc=float(result.final_val_acc),
                   best_epoch=int(result.best_epoch), epochs_run=len(result.history),
                   train_time_s=float(result.train_time_s), stopped_reason=result.stopped_reason,
                   run_dir=str(result.out_dir), history=result.history_rows,
                   planned_epochs=result.planned_epochs, estimated_epoch_s=result.estimated_epoch_s,
                   test_acc=test.get("test_acc"), test_loss=test.get("test_loss"),
                   test_images=test.get("test_images"))


@dataclass
class Misclassified:
    """One validation image the model got wrong, with a thumbnail for the report."""

    index: int               # in the validation split
    true_class: str
    predicted_class: str
    confidence: float        # the softmax probability the model gave its (wrong) answer
    thumbnail_png: str = ""  # base64 PNG


@dataclass
class PerClass:
    """The first seed's best checkpoint on the validation split, as :func:`cnnzoo.training.evaluate`
    scores it (so ``cnnzoo evaluate <run>/best.pt --split val`` prints the same numbers)."""

    class_names: list[str]
    accuracy: list[float]                # per class: correct / images of that class (recall)
    support: list[int]                   # validation images per class
    confusion_matrix: list[list[int]]    # rows: true class, columns: predicted
    misclassified: list[Misclassified] = field(default_factory=list)  # most confident mistakes first

    @classmethod
    def from_dict(cls, d: dict) -> "PerClass":
        out = _from_dict(cls, d)
        out.misclassified = [_from_dict(Misclassified, m) for m in d.get("misclassified") or []]
        return out


@dataclass
class ModelRecord:
    """Everything the comparison knows about one model (see the module docstring)."""

    name: str                                   # the spec as written: 'mobilenet_v1:width_mult=0.5,image_size=96'
    slug: str = ""                              # its folder name (from the spec when not given)
    model: str = ""
    model_args: dict = field(default_factory=dict)  # constructor arguments (image_size is not one)
    status: str = "done"
    reason: Optional[str] = None
    traceback: Optional[str] = None
    settings: dict = field(default_factory=dict)  # everything that decides the numbers: reuse compares it
    image_size: Optional[int] = None            # the side it was trained and measured at
    # size, compute and speed of the trained model
    params: Optional[int] = None
    macs: Optional[int] = None                  # multiply-adds per image at image_size
    weights_mb: Optional[float] = None
    latency_b1_ms: Optional[float] = None
    latency_batch_ms_per_image: Optional[float] = None
    latency_batch_size: Optional[int] = None
    inference_images_per_s: Optional[float] = None
    device: Optional[str] = None
    runtime: str = "torch"                      # where the latencies were measured (compare --runtime)
    # int8: the measured (first seed's) model scored on the validation split in fp32 and in int8, and
    # the share of those images where int8 picks the fp32 model's class (results.json keeps it inside
    # runtime_accuracy, as "agreement")
    runtime_accuracy: Optional[Int8Accuracy] = None
    int8_agreement: Optional[float] = None
    # training (accuracies: means over seeds; the rest: the first seed's, time: mean per run)
    epochs_run: Optional[int] = None
    train_time_s: Optional[float] = None
    time_per_epoch_s: Optional[float] = None
    train_images_per_s: Optional[float] = None
    best_val_acc: Optional[float] = None
    final_val_acc: Optional[float] = None
    best_epoch: Optional[int] = None
    stopped_reason: Optional[str] = None
    run_dir: Optional[str] = None
    train_config: Optional[dict] = None
    history: list[dict] = field(default_factory=list)  # EpochRecord.to_dict rows, as history.json holds them
    # uncertainty
    val_images: Optional[int] = None
    val_acc_low: Optional[float] = None         # 95 % interval of best_val_acc (see interval())
    val_acc_high: Optional[float] = None
    best_val_acc_std: Optional[float] = None    # across seeds (None with one)
    runs: list[SeedRun] = field(default_factory=list)
    # over-fitting: the last epoch's running training accuracy, mean over seeds
    final_train_acc: Optional[float] = None
    # the test split, when the data has one (best weights chosen on validation, reported on test)
    test_acc: Optional[float] = None
    test_acc_std: Optional[float] = None
    test_images: Optional[int] = None
    test_acc_low: Optional[float] = None
    test_acc_high: Optional[float] = None
    per_class: Optional[PerClass] = None
    # --tta: the first seed's best weights on the held-out split (test, else validation) with test-time
    # augmentation (each image and its mirror averaged)
    tta_acc: Optional[float] = None
    # the plan: estimated before training (all seeds), against the actual total in runs
    estimated_s: Optional[float] = None
    estimated_epoch_s: Optional[float] = None
    planned_epochs: Optional[int] = None

    def __post_init__(self):
        if not self.slug:
            self.slug = model_slug(self.name)

    # ---- reading and writing ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The record as ``results.json`` holds it: JSON-safe, every field present."""
        out = asdict(self)
        agreement = out.pop("int8_agreement")
        if self.runtime_accuracy is not None:
            out["runtime_accuracy"] = {**self.runtime_accuracy.to_dict(), "agreement": agreement}
        return jsonable(out)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelRecord":
        """A record written by :meth:`to_dict` (or an older, version-1 file: absent fields stay None)."""
        if not isinstance(d, dict) or "name" not in d:
            raise UserError(f"a comparison record needs at least a name, got {d!r:.80}")
        record = _from_dict(cls, d)
        record.runs = [_from_dict(SeedRun, r) for r in d.get("runs") or []]
        record.per_class = PerClass.from_dict(d["per_class"]) if d.get("per_class") else None
        int8 = d.get("runtime_accuracy")
        record.runtime_accuracy = Int8Accuracy.from_dict(int8) if int8 else None
        record.int8_agreement = int8.get("agreement") if int8 else None
        return record

    def __getitem__(self, key: str) -> Any:
        """``record["name"]``: read access by key, as the plain dicts this record replaced had."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None) if key in self.__dataclass_fields__ else None
        return default if value is None else value

    # ---- derived --------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def repeats(self) -> int:
        return max(1, len(self.runs))

    @property
    def total_train_time_s(self) -> Optional[float]:
        """Training time of all seeds together (what the plan's estimate is compared with)."""
        if self.runs:
            return sum(r.train_time_s for r in self.runs)
        return self.train_time_s

    def interval(self) -> Optional[tuple[float, float]]:
        """The 95 % interval of ``best_val_acc`` (:func:`interval_over_images_and_seeds`), or None when
        the number of validation images is unknown."""
        if self.val_acc_low is not None and self.val_acc_high is not None:
            return self.val_acc_low, self.val_acc_high
        if self.best_val_acc is None:
            return None
        return interval_over_images_and_seeds(self.best_val_acc, self.val_images, self.best_val_acc_std)

    def test_interval(self) -> Optional[tuple[float, float]]:
        if self.test_acc_low is not None and self.test_acc_high is not None:
            return self.test_acc_low, self.test_acc_high
        if self.test_acc is None:
            return None
        return interval_over_images_and_seeds(self.test_acc, self.test_images, self.test_acc_std)

    @property
    def overfit_gap(self) -> Optional[float]:
        """Final training accuracy minus final validation accuracy (fractions), when both are known."""
        if self.final_train_acc is None or self.final_val_acc is None:
            return None
        return self.final_train_acc - self.final_val_acc

    @property
    def width_mult(self) -> Optional[float]:
        """The width multiplier alpha it was built with (the family's default when not given)."""
        if "width_mult" in self.model_args:
            return self.model_args["width_mult"]
        try:
            return get_model_info(self.model).defaults.get("width_mult")
        except UserError:  # a model no longer registered: nothing to say
            return None


def as_records(records: Sequence[Union[ModelRecord, dict]]) -> list[ModelRecord]:
    """Records as given, dicts (from a ``results.json``, or written by hand) read into records."""
    return [r if isinstance(r, ModelRecord) else ModelRecord.from_dict(r) for r in records]


def mean_and_std(values: Sequence[float]) -> tuple[float, Optional[float]]:
    """Mean and sample standard deviation (n - 1); the std is None for a single value."""
    values = [float(v) for v in values]
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def interval_over_images_and_seeds(mean: float, n: Optional[int],
                                   std: Optional[float]) -> Optional[tuple[float, float]]:
    """95 % interval of an accuracy: the Wilson interval over the ``n`` images, widened with repeats to
    at least ``mean +- SEED_SPREAD * std`` across seeds (whichever noise is larger shows)."""
    wilson = accuracy_interval(mean, n) if n else None
    if wilson is None:
        return None
    if std is None or not math.isfinite(std):
        return wilson
    return max(0.0, min(wilson[0], mean - SEED_SPREAD * std)), min(1.0, max(wilson[1], mean + SEED_SPREAD * std))
