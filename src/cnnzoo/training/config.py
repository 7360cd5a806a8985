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
from dataclasses import dataclass, fields, replace
from typing import Any, Optional

from torch import nn

# TrainConfig is declared below the checkpoint (which stores one); here it is resolved and checked.
from cnnzoo.config import (
    AUGMENTS,
    BOTH,
    FINETUNE_MODES,
    OPTIMIZERS,
    RECIPE_NAMES,
    RULES,
    SCHEDULES,
    TRAIN_ONLY,
    TrainConfig,
    option,
    options_changeable_on_resume,
    resolved,
    training_options,
)
from cnnzoo.errors import UserError
from cnnzoo.registry import ModelError, get_model_info

__all__ = ["TrainConfig", "option", "RULES", "OPTIMIZERS", "SCHEDULES", "AUGMENTS", "FINETUNE_MODES", "BOTH",
           "TRAIN_ONLY", "training_options", "options_changeable_on_resume", "make_config", "check_config",
           "resolve_config", "describe", "FAMILY_TRAINING", "MIN_STEPS_PER_EPOCH", "MIN_BATCH_SIZE",
           "default_batch_size", "family_training_defaults", "has_normalization", "default_epochs",
           "default_channels_last", "default_augment", "MIRROR_SENSITIVE_SOURCES", "Recipe", "RECIPES",
           "RECIPE_NAMES", "resolved"]


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
    if c.finetune == "linear":
        on_pixels = [name for name in ("mixup", "cutmix", "progressive_resize") if getattr(c, name)]
        if on_pixels:
            raise UserError(f"--{on_pixels[0].replace('_', '-')} works on images, and --finetune linear trains the "
                            "head on cached features of them; leave it out, or use --finetune full")


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


def default_channels_last(device_type: str, amp: Optional[bool]) -> bool:
    """NHWC on the CPU, where oneDNN's convolutions mostly train faster in it (every family at full
    and reduced width; a few small MobileNetV2 and ResNet-18 cases are a little slower:
    ``benchmarks/bench_train.py --channels-last`` and ``--no-channels-last`` time them). And on CUDA with mixed
    precision, where tensor cores want it. fp32 on CUDA keeps NCHW."""
    return device_type == "cpu" or bool(amp)


@dataclass(frozen=True)
class Recipe:
    """A named set of defaults (``--recipe``): each value fills its option when the user left it unset.

    ``policy`` is appended to the data's default geometric augmentation (``light`` -> ``light-trivial-erase``);
    mirror-sensitive sources keep ``none``. ``mixup``/``cutmix`` are Beta alphas (0: off), ``ema`` a decay
    (None: off). ``progressive_resize``: from scratch, at sizes where the first epochs can train at
    half the side (:data:`PROGRESSIVE_FROM_SIZE`).
    """

    name: str
    policy: str = ""
    mixup: float = 0.0
    cutmix: float = 0.0
    ema: Optional[float] = None
    progressive_resize: bool = True


# Progressive resizing starts at half the side and never below 32 px: from 64 px up it does something.
PROGRESSIVE_FROM_SIZE = 64

# Measured with benchmarks/bench_time_to_accuracy.py on flowers-train (2,347 training / 587 validation
# photos of our own split, ResNet-18 x0.5 at 128 px, from scratch, 5-minute budget, 2 cores):
# - progressive resizing, on in both recipes: best (last) validation accuracy 81.8 % (80.7) and 80.2 %
#   (79.7) on seeds 0 and 1, against 79.4 % (79.4) and 80.1 % (79.7) without it: about 1.7 times the
#   epochs in the same minutes (55 against 32). At a fixed 20 epochs: 77.3 % in 147 s against 77.0 %
#   in 216 s. Off when starting from weights (not measured there; the weights were trained at their
#   own size) and below 64 px, where it would do nothing.
# - EMA 0.999 on top: 80.1 % and 80.9 %, fewer epochs (it validates both weights each epoch): off.
# - "strong" (TrivialAugment wide + random erasing 0.1 and mixup 0.2 / CutMix 1.0 as torchvision's
#   classification recipe, EMA) lost to "plain" on flowers (75.5 % against 79.6 %, one run each, before
#   progressive resizing) and tied on cifar10-10k (70.4 % both, MobileNet x0.5 at 32 px, 15 minutes):
#   regularisation that pays over hundreds of epochs costs accuracy in tens, so "plain" stays the
#   default. Again with bfloat16 chosen by timing and progressive resizing (5 minutes, seeds 0/1):
#   strong 78.7 / 79.6 % (50 / 57 epochs) against plain 80.1 / 81.3 % (74 / 73 epochs). The EMA decay
#   is lower than torchvision's 0.99998 per step because cnnzoo's runs are thousands of steps, not
#   hundreds of thousands (ModelEma's warm-up keeps early epochs from being the initialisation).
RECIPES: dict[str, Recipe] = {
    "plain": Recipe("plain"),
    "strong": Recipe("strong", policy="-trivial-erase", mixup=0.2, cutmix=1.0, ema=0.999),
}
assert tuple(RECIPES) == RECIPE_NAMES  # the flag's choices are spelt out in cnnzoo.config


def resolve_config(c: TrainConfig, *, num_train: int, image_size: int, model: nn.Module,
                   device_type: str = "cpu") -> TrainConfig:
    """Fill every ``None`` with the default for this data set size, image size, model and device."""
    normalised = has_normalization(model)
    recipe = RECIPES[c.recipe or "plain"]
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
        recipe=recipe.name,
        augment=c.augment or default_augment(c.data, image_size, recipe.policy),
        # the linear probe trains on cached features, not images: nothing to mix
        mixup=(0.0 if finetune == "linear" else recipe.mixup) if c.mixup is None else c.mixup,
        cutmix=(0.0 if finetune == "linear" else recipe.cutmix) if c.cutmix is None else c.cutmix,
        ema=recipe.ema if c.ema is None else c.ema,
        progressive_resize=(recipe.progressive_resize and c.weights is None and image_size >= PROGRESSIVE_FROM_SIZE
                            if c.progressive_resize is None else c.progressive_resize),
        channels_last=(default_channels_last(device_type, c.amp) if c.channels_last is None
                       else c.channels_last),
    )


# Sources whose classes change under a mirror image ("light" and "standard" both flip left-right):
# a flipped 2 or 7 is not a digit. On digits, no augmentation reached 98.9 % validation accuracy
# with ResNet-18 where flips+shifts peaked at 97.2 % (same 14 epochs, see the training note).
MIRROR_SENSITIVE_SOURCES = ("digits",)


def default_augment(data: str, image_size: int, policy: str = "") -> str:
    """``none`` for mirror-sensitive sources, ``light`` (shift + flip) for small images, else
    ``standard`` (random-resized crop + flip); ``policy`` (a recipe's, e.g. ``-trivial-erase``) is
    appended to the last two."""
    if str(data) in MIRROR_SENSITIVE_SOURCES:
        return "none"
    return ("light" if image_size <= 64 else "standard") + policy


def describe(c: TrainConfig) -> str:
    """The resolved settings on one line, printed once at the start of a run."""
    return (f"{c.model} {c.model_args or ''} on {c.data}: {c.epochs} epochs, batch {c.batch_size}, "
            f"{c.optimizer} lr {c.lr:g} ({c.schedule}, warm-up {c.warmup_epochs:g} ep), "
            f"weight decay {c.weight_decay:g}, label smoothing {c.label_smoothing:g}, "
            f"{c.image_size}px, augment {c.augment}, seed {c.seed}"
            + (f", mixup {c.mixup:g}" if c.mixup else "") + (f", cutmix {c.cutmix:g}" if c.cutmix else "")
            + (f", EMA {c.ema:g}" if c.ema else "") + (", progressive resize" if c.progressive_resize else "")
            + (", channels_last" if c.channels_last else "") + (", amp" if c.amp else ""))
