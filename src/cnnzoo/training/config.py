"""What a training run is configured by, and the defaults that make a first run learn.

Every field left at ``None`` means "the default for this data and this model"; :func:`resolve_config`
fills them in once the data is loaded and the model is built, and the resolved values are what the
run prints, records in ``history.json`` and stores in every checkpoint.

Why these defaults (the study notes' VGG16 stayed at chance and their MobileNetV2 over-fitted):
- inputs are normalised by the data set's mean and std (the data package computes them);
- SGD with Nesterov momentum 0.9, the learning rate scaled linearly with the batch size
  (Goyal et al. 2017, "Accurate, Large Minibatch SGD": 0.1 per 256 images), a short linear warm-up
  then cosine decay (Loshchilov & Hutter 2017, SGDR);
- weight decay 5e-4 on convolution and linear weights only; decaying norm scales and biases only
  hurts (He et al. 2019, "Bag of Tricks");
- label smoothing 0.1 (Szegedy et al. 2016, Inception v3) and light augmentation against over-fitting;
- a model with no normalisation layer at all (VGG as in 2014, or ``--norm none``) trains with AdamW,
  a lower learning rate and a longer warm-up: plain SGD at a batch-scaled rate is what left the
  notes' VGG16 at chance; VGG with or without batch norm gets AdamW at 1e-4 (FAMILY_TRAINING);
- small data sets get smaller batches, so an epoch is still at least MIN_STEPS_PER_EPOCH steps.
"""
from __future__ import annotations

import math
from dataclasses import Field, asdict, dataclass, field, fields, replace
from typing import Any, Optional

from torch import nn

from cnnzoo.data import RESIZE_MODES
from cnnzoo.devices import DEVICES
from cnnzoo.errors import UserError
from cnnzoo.registry import ModelError, get_model_info

OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("cosine", "onecycle", "step", "none")
AUGMENTS = ("none", "light", "standard")
FINETUNE_MODES = ("linear", "full", "gradual")

# Which commands show an option as a flag. "compare" options are the settings every model of a
# comparison shares; the rest belong to one run (its folder, resuming it).
BOTH, TRAIN_ONLY = ("train", "compare"), ("train",)


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
           valid: Optional[str] = None):
    """A :class:`TrainConfig` field and everything the command line needs to offer it, in one place.

    ``flag`` defaults to the field name with dashes (``batch_size`` -> ``--batch-size``).
    ``on_resume``: the option may be changed when a run is resumed, because it does not change the
    computation so far (more epochs, patience, the device...). ``cli_unit``: the flag takes another
    unit, ``(name, factor)``: ``("MIN", 60)`` reads minutes into a field kept in seconds.
    ``group``: "training", "output", "fine-tuning", "sequences" or "distributed": the heading
    ``--help`` lists it under. ``valid``: the rule a value must meet, one of :data:`RULES`
    (``choices`` are checked too).
    """
    if valid is not None and valid not in RULES:
        raise ValueError(f"unknown rule {valid!r}; known: {', '.join(RULES)}")
    meta = {"help": help, "flag": flag, "choices": choices, "metavar": metavar, "commands": commands,
            "on_resume": on_resume, "cli_unit": cli_unit, "group": group, "valid": valid}
    return field(default=default, metadata={"option": meta})


@dataclass
class TrainConfig:
    """One training run. ``None`` = the default for this data and model (see :func:`resolve_config`).

    Every field below that is an :func:`option` is also a flag of ``cnnzoo train`` (and of
    ``cnnzoo compare`` unless it belongs to one run): adding an option here adds it everywhere.
    """

    model: str                                  # a registered name, e.g. "resnet18"
    model_args: dict = field(default_factory=dict)  # constructor overrides, e.g. {"width_mult": 0.5}
    data: str = option("digits", "an image folder (one sub-folder per class), 'digits' (built in, the "
                       "default), 'synthetic', 'cifar10'...")
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
    augment: Optional[str] = option(None, "default: none for digits, light up to 64 px, else standard",
                                    choices=AUGMENTS)
    channels_last: Optional[bool] = option(None, "NHWC memory layout (default: on for CPU, and for CUDA "
                                           "with --amp)")
    amp: bool = option(False, "mixed precision (bfloat16 on CPU, float16 on CUDA)")
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
    # --- starting from pretrained weights (fine-tuning) ---
    weights: Optional[str] = option(None, "start from these weights: 'torchvision' (alias 'imagenet') for "
                                    "the published ImageNet weights, or a path to a state dict or a "
                                    "cnnzoo checkpoint", group="fine-tuning")
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


def training_options(command: Optional[str] = None) -> list[Field]:
    """The :class:`TrainConfig` fields that are options (of ``command``, when given), in order."""
    return [f for f in fields(TrainConfig)
            if "option" in f.metadata and (command is None or command in f.metadata["option"]["commands"])]


def options_changeable_on_resume() -> set[str]:
    return {f.name for f in training_options() if f.metadata["option"]["on_resume"]}


def make_config(config: Optional[TrainConfig] = None, **fields_: Any) -> TrainConfig:
    """A config from an optional base plus keyword fields, with every value checked."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(fields_) - known)
    if unknown:
        raise UserError(f"unknown training option(s) {', '.join(unknown)}; "
                        f"known: {', '.join(sorted(known))}")
    if config is None:
        if "model" not in fields_:
            raise UserError("train needs a model name, e.g. train(model='resnet18')")
        config = TrainConfig(**fields_)
    else:
        config = replace(config, **fields_)
    check_config(config)
    return config


def check_config(c: TrainConfig) -> None:
    """Raise :class:`UserError` for a value no run could use, naming the option and what it must be."""
    if not isinstance(c.model, str) or not c.model:
        raise UserError(f"model must be a model name such as 'resnet18', got {c.model!r}")
    if not isinstance(c.model_args, dict):
        raise UserError(f"model_args must be a dict, got {type(c.model_args).__name__}")
    for f in training_options():
        meta, value = f.metadata["option"], getattr(c, f.name)
        if value is None:
            continue
        if meta["choices"] and value not in meta["choices"]:
            raise UserError(f"{f.name} must be one of {', '.join(meta['choices'])}, got {value!r}")
        if meta["valid"]:
            accepts, says = RULES[meta["valid"]]
            if not accepts(value):
                raise UserError(f"{f.name} must be {says}, got {value!r}")


# Training settings per model family, used unless the user sets the optimizer or the learning rate.
# Measured on flowers-mini (240 train images, 64 px, batch 16, 25 epochs, seed 0): vgg16_bn with
# SGD at the batch-scaled rate reached 33 % validation accuracy, AdamW at 1e-3 25 % (chance is 20 %),
# AdamW at 1e-4 67 %. VGG's 100M-parameter classifier wants a small step; the other families learn
# with the general defaults below (mobilenet_v2 0.5: 55 % there; every family above 92 % on digits).
FAMILY_TRAINING = {
    "vgg": {"optimizer": "adamw", "lr": 1e-4},
}

# Small data gets smaller batches so that an epoch is still about this many optimizer steps: with
# 240 images and a batch of 64, an epoch is 3 steps and nothing learns in 15 epochs
# (flowers-mini: mobilenet_v2 0.5 stayed at 20 % = chance; 55 % with batches of 16).
MIN_STEPS_PER_EPOCH = 15
MIN_BATCH_SIZE = 16


def default_batch_size(num_train: int) -> int:
    """64 (128 from 20k images), halved down to MIN_BATCH_SIZE until an epoch has at least
    MIN_STEPS_PER_EPOCH steps."""
    size = 128 if num_train >= 20_000 else 64
    while size > MIN_BATCH_SIZE and num_train / size < MIN_STEPS_PER_EPOCH:
        size //= 2
    return size


def family_training_defaults(model_name: str, config: "TrainConfig") -> dict:
    """The family's entry of FAMILY_TRAINING, unless the user chose the optimizer or learning rate."""
    if config.optimizer is not None or config.lr is not None:
        return {}
    try:
        family = get_model_info(model_name).family
    except ModelError:  # a model built outside the registry has no family and so no family defaults
        return {}
    return dict(FAMILY_TRAINING.get(family, {}))


def has_normalization(model: nn.Module) -> bool:
    """Whether any layer normalises activations (batch/group/layer/instance norm)."""
    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    return any(isinstance(m, norm_types) for m in model.modules())


def default_epochs(num_train: int) -> int:
    # About 20k images seen (digits: 14 epochs of 1,437 images), never fewer than 8 passes
    # (large sets) nor more than 60 (tiny folders, where each pass is quick anyway).
    return int(min(60, max(8, math.ceil(20_000 / max(num_train, 1)))))


def default_channels_last(device_type: str, amp: bool) -> bool:
    """NHWC on the CPU, where oneDNN's convolutions mostly run faster in it: of 22 model/size cases
    timed on two cores (every family, full and reduced width, 32 and 64 px, one training step) NHWC
    was 1.0-1.7x faster in 20 and 0.91-0.93x in two (MobileNetV2 at full width and ResNet-18 at half
    width, 32 px); in whole runs on digits, MobileNetV2 at half width came out at 0.85x. And on CUDA
    with mixed precision, where tensor cores want it. fp32 on CUDA keeps NCHW."""
    return device_type == "cpu" or amp


def resolve_config(c: TrainConfig, *, num_train: int, image_size: int, model: nn.Module,
                   device_type: str = "cpu") -> TrainConfig:
    """Fill every ``None`` with the default for this data set size, image size, model and device."""
    normalised = has_normalization(model)
    batch_size = c.batch_size or default_batch_size(num_train)
    batch_size = min(batch_size, num_train)  # a folder smaller than a batch still trains
    family = family_training_defaults(c.model, c)
    optimizer = c.optimizer or family.get("optimizer") or ("sgd" if normalised else "adamw")
    if c.lr is not None:
        lr = c.lr
    elif "lr" in family:
        lr = family["lr"]
    elif optimizer == "sgd":
        lr = 0.1 * batch_size / 256  # Goyal et al.'s linear rule (0.05 or 0.1 per 64 learned worse on digits)
    else:
        lr = 1e-3 if normalised else 5e-4  # Adam(W): Kingma & Ba's default; lower with no norm layers
    if c.weight_decay is not None:
        weight_decay = c.weight_decay
    else:
        weight_decay = 5e-4 if optimizer == "sgd" else 0.05  # AdamW decay is decoupled, so larger
    warmup = c.warmup_epochs if c.warmup_epochs is not None else (1.0 if normalised else 3.0)
    epochs = c.epochs or default_epochs(num_train)
    # Starting from weights: fine-tune everything (the usual best on a few thousand photos), at one
    # learning rate, as torchvision's and timm's references do. A slower backbone is one flag away;
    # it is not the default because it lost here: digits 0-4 -> 5-9 with 30 images a class, 5 epochs,
    # ResNet-18 x0.5: 96.4 % with the backbone at the head's rate, 89.7 % at a tenth, 95.0 % from scratch.
    finetune = c.finetune or ("full" if c.weights is not None else None)
    backbone_lr_scale = c.backbone_lr_scale or 1.0
    return replace(
        c,
        finetune=finetune,
        backbone_lr_scale=backbone_lr_scale,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        schedule=c.schedule or "cosine",
        warmup_epochs=min(warmup, epochs / 2),
        weight_decay=weight_decay,
        label_smoothing=0.1 if c.label_smoothing is None else c.label_smoothing,
        image_size=image_size,
        augment=c.augment or default_augment(c.data, image_size),
        channels_last=(default_channels_last(device_type, c.amp) if c.channels_last is None
                       else c.channels_last),
    )


# Sources whose classes change under a mirror image ("light" and "standard" both flip left-right):
# a flipped 2 or 7 is not a digit. On digits, no augmentation reached 98.9 % validation accuracy
# with ResNet-18 where flips+shifts peaked at 97.2 % (same 14 epochs, see the training note).
MIRROR_SENSITIVE_SOURCES = ("digits",)


def default_augment(data: str, image_size: int) -> str:
    """``none`` for mirror-sensitive sources, ``light`` (shift + flip) for small images, else
    ``standard`` (random-resized crop + flip)."""
    if str(data) in MIRROR_SENSITIVE_SOURCES:
        return "none"
    return "light" if image_size <= 64 else "standard"


def describe(c: TrainConfig) -> str:
    """The resolved settings on one line, printed once at the start of a run."""
    return (f"{c.model} {c.model_args or ''} on {c.data}: {c.epochs} epochs, batch {c.batch_size}, "
            f"{c.optimizer} lr {c.lr:g} ({c.schedule}, warm-up {c.warmup_epochs:g} ep), "
            f"weight decay {c.weight_decay:g}, label smoothing {c.label_smoothing:g}, "
            f"{c.image_size}px, augment {c.augment}, seed {c.seed}"
            + (", channels_last" if c.channels_last else "") + (", amp" if c.amp else ""))
