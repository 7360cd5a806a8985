"""What a comparison says about itself as a whole: the data, the shared settings, how they were chosen.

:class:`ComparisonMeta` is built once by the runner, read by attribute by the report, and written
into ``results.json`` (beside the per-model records) by :meth:`ComparisonMeta.to_dict`; a
``results.json`` (or a hand-written dict) reads back through :meth:`ComparisonMeta.from_dict`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from cnnzoo.compare.estimate import Estimate, format_duration
from cnnzoo.compare.plan import ImageSize
from cnnzoo.compare.results import jsonable
from cnnzoo.registry import get_model_info
from cnnzoo.training.config import FAMILY_TRAINING, MIN_STEPS_PER_EPOCH, TrainConfig, training_options

TITLE = "cnnzoo comparison"
EVERY_MODEL = "*"  # the model name of the settings every model shares; each model's own config replaces it


@dataclass(frozen=True)
class DataSummary:
    """The data every model saw (the first seed's split; with several image sizes, the comparison's own)."""

    source: str = "?"
    num_classes: Optional[int] = None
    class_names: tuple[str, ...] = ()
    train_images: Optional[int] = None
    val_images: Optional[int] = None
    test_images: int = 0
    image_size: Optional[int] = None
    image_sizes: tuple[int, ...] = ()  # every size a model trained at

    @classmethod
    def from_splits(cls, splits, source: str, image_sizes: list[int]) -> "DataSummary":
        """From a :class:`cnnzoo.data.DataSplits`."""
        return cls(source=str(source), num_classes=len(splits.class_names), class_names=tuple(splits.class_names),
                   train_images=len(splits.train), val_images=len(splits.val) if splits.val is not None else 0,
                   test_images=len(splits.test) if splits.test is not None else 0, image_size=splits.image_size,
                   image_sizes=tuple(image_sizes))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DataSummary":
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in values.items() if k in names}
        return cls(**{**known, "class_names": tuple(known.get("class_names") or ()),
                      "image_sizes": tuple(known.get("image_sizes") or ())})


@dataclass(frozen=True)
class ChosenSet:
    """The default model set picked for the data when no models were given (:mod:`cnnzoo.compare.plan`)."""

    name: str
    models: tuple[str, ...]
    epochs: int
    note: str = ""   # the plan's own description
    table: str = ""  # every default set, as printed by --show-plans


@dataclass(frozen=True)
class ComparisonMeta:
    """The comparison as a whole (see the module docstring)."""

    data: DataSummary = DataSummary()
    # the shared options (the batch size: the first model's, resolved)
    settings: TrainConfig = field(default_factory=lambda: TrainConfig(model=EVERY_MODEL))
    device: Optional[str] = None            # where the models trained and were timed ("cpu", "cuda")
    repeats: int = 1
    total_time_s: Optional[float] = None
    estimates: tuple[Estimate, ...] = ()    # the plan: each model's estimated time, before training
    estimate_table: str = ""                # the same, as printed
    notes: tuple[str, ...] = ()             # sentences the report shows under its title
    chosen: Optional[ChosenSet] = None
    title: str = TITLE
    created: str = ""
    wall_time_s: Optional[float] = None     # everything so far: loading, estimating, training, measuring

    @property
    def estimated_total_s(self) -> Optional[float]:
        known = [e.total_s for e in self.estimates if e.total_s is not None]
        return sum(known) if known else None

    @property
    def seeds(self) -> list[int]:
        return list(range(self.settings.seed, self.settings.seed + self.repeats))

    def to_dict(self) -> dict[str, Any]:
        """The keys ``results.json`` holds beside ``models`` (JSON-safe)."""
        settings = {f.name: getattr(self.settings, f.name) for f in training_options("compare")}
        out: dict[str, Any] = {
            "title": self.title, "created": self.created, "data": dataclasses.asdict(self.data),
            "settings": settings, "device": self.device, "repeats": self.repeats, "total_time_s": self.total_time_s,
            "estimate": {"table": self.estimate_table, "total_s": self.estimated_total_s,
                         "models": [{"name": e.name, "epochs": e.epochs, "epoch_s": e.epoch_s, "total_s": e.total_s,
                                     "note": e.note} for e in self.estimates]},
            "notes": list(self.notes),
        }
        if self.chosen is not None:
            out["plan"] = dataclasses.asdict(self.chosen)
        if self.wall_time_s is not None:
            out["wall_time_s"] = self.wall_time_s
        return jsonable(out)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ComparisonMeta":
        """A :meth:`to_dict` dict, or any part of one (absent keys take the defaults)."""
        settings = values.get("settings") or {}
        repeats = values.get("repeats") or 1
        estimate = values.get("estimate") or {}
        chosen = values.get("plan")
        return cls(
            data=DataSummary.from_dict(values.get("data") or {}),
            settings=TrainConfig.from_dict({**settings, "model": EVERY_MODEL}),
            device=values.get("device"), repeats=repeats, total_time_s=values.get("total_time_s"),
            estimates=tuple(Estimate(m["name"], None, epochs=m.get("epochs"), epoch_s=m.get("epoch_s"),
                                     repeats=repeats, note=m.get("note") or "")
                            for m in estimate.get("models") or []),
            estimate_table=estimate.get("table") or "", notes=tuple(values.get("notes") or ()),
            chosen=None if not chosen else ChosenSet(chosen["name"], tuple(chosen["models"]), chosen["epochs"],
                                                     chosen.get("note", ""), chosen.get("table", "")),
            title=values.get("title") or TITLE, created=values.get("created") or "",
            wall_time_s=values.get("wall_time_s"))

    def finished(self, wall_time_s: float) -> "ComparisonMeta":
        """The same, with the wall-clock time so far."""
        return dataclasses.replace(self, wall_time_s=wall_time_s)


def as_meta(meta: "ComparisonMeta | dict") -> ComparisonMeta:
    """``meta`` as given, or a dict (from a ``results.json``, or written by hand) read into a record."""
    return meta if isinstance(meta, ComparisonMeta) else ComparisonMeta.from_dict(meta)


def settings_notes(shared: TrainConfig, user_options: set, repeats: int, total_time_s: Optional[float],
                   models: Sequence[str], image_sizes: Sequence[tuple[str, ImageSize]] = ()) -> list[str]:
    """How the shared settings were chosen, in sentences, about the ``models`` compared (registry
    names) only; ``image_sizes``: (spec, how its size was chosen) per model."""
    batch_note = "" if "batch_size" in user_options else (
        f" (sized to the data: at least {MIN_STEPS_PER_EPOCH} optimizer steps per epoch)")
    notes = [f"Batch size {shared.batch_size} for every model{batch_note}.", _family_note(shared, models)]
    notes += [line for line in (size.sentence(spec) for spec, size in image_sizes) if line]
    if repeats > 1:
        notes.append(f"Each model was trained {repeats} times, with seeds {shared.seed} to "
                     f"{shared.seed + repeats - 1}: a seed sets initialisation, batch order and "
                     "augmentation, and the validation split of data split by seed (built-in, synthetic, "
                     "CIFAR; a folder's split is fixed by its file names). Every model sees the same "
                     "split for the same seed. Accuracies are means +- standard deviations over the "
                     "seeds; per-class numbers and mistakes are the first seed's.")
    if total_time_s is not None:
        notes.append(f"Total budget {format_duration(total_time_s)} of training, shared equally: "
                     f"{format_duration(shared.time_budget_s)} per run, each run's schedule "
                     "fitted to the epochs that budget holds.")
    return notes


def _family_note(shared: TrainConfig, models: Sequence[str]) -> str:
    """Which of the compared models train with their family's own optimizer and learning rate."""
    resolved = "each run's resolved settings are in results.json, train_config"
    if shared.optimizer is not None or shared.lr is not None:
        return f"Optimizer and learning rate as given, for every model ({resolved})."
    families: dict[str, list[str]] = {}
    for model in dict.fromkeys(models):
        family = get_model_info(model).family
        if family in FAMILY_TRAINING:
            families.setdefault(family, []).append(model)
    if not families:
        return f"Every model trains with cnnzoo train's defaults for the options not given ({resolved})."
    own = "; ".join(f"{', '.join(names)} ({family} family): " + ", ".join(
        f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in FAMILY_TRAINING[family].items())
        for family, names in families.items())
    others = [m for m in models if get_model_info(m).family not in families]
    return (f"Family training defaults, used because neither --optimizer nor --lr was given: {own}. "
            + (f"The other models use cnnzoo train's defaults ({resolved})." if others else f"({resolved}.)"))
