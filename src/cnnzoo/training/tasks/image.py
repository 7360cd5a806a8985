"""Image classification: the first task, and the one every model of the zoo but WaveNet trains on.

Batches are ``(images, labels)`` from :class:`cnnzoo.data.BatchLoader` (normalised, augmented per
batch on the device); the loss is cross-entropy with label smoothing, plus GoogLeNet's auxiliary
losses when its auxiliary heads are on; accuracy is the metric that decides ``best.pt``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, cast

import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.checkpoint import Checkpoint, ImageFields
from cnnzoo.data import BatchLoader, DataSplits, load_dataset
from cnnzoo.data.augment import progressive_size
from cnnzoo.devices import autocast
from cnnzoo.errors import UserError
from cnnzoo.preprocessing import Preprocessing
from cnnzoo.pretrained import weights_preprocessing
from cnnzoo.training.config import TrainConfig, resolve_config, resolved
from cnnzoo.training.mixing import Mixing, mixed_correct, soft_target_cross_entropy
from cnnzoo.training.tasks.base import Task, TrainMetrics, with_imposed

AUX_LOSS_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers (Szegedy et al. 2015, section 6)
EVAL_BATCH_SIZE = 256  # validation needs no gradients: larger batches are simply faster


class Accuracy(TrainMetrics):
    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.seen = 0

    def update(self, batch, loss: torch.Tensor, logits: torch.Tensor) -> None:
        y = batch[1]  # labels, or soft targets [B, classes] of a mixed batch
        self.loss_sum += loss.float() * len(y)
        self.correct += mixed_correct(logits, y) if y.ndim == 2 else (logits.argmax(1) == y).sum()
        self.seen += len(y)

    def progress(self) -> dict[str, str]:
        seen = max(self.seen, 1)
        return {"loss": f"{self.loss_sum.item() / seen:.4f}", "acc": f"{self.correct.item() / seen:.3f}"}

    def result(self) -> dict[str, float]:
        seen = max(self.seen, 1)
        return {"loss": self.loss_sum.item() / seen, "acc": self.correct.item() / seen}


def classification_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, smoothing: float):
    """Cross-entropy (plus GoogLeNet's auxiliary losses when its aux heads are on) and the logits.
    ``y``: labels ``[B]``, or soft targets ``[B, classes]`` of a mixed batch (which carry their label
    smoothing already). Under torchrun ``model`` is DistributedDataParallel's wrapper around
    ``TrainingForward``, whose forward already returns ``(logits, aux_logits)``."""
    if getattr(model, "aux_logits", False) and hasattr(model, "forward_train"):
        out = cast(Callable[..., Any], model.forward_train)(x)
    else:
        out = model(x)
    logits, aux = out if isinstance(out, tuple) else (out, ())

    def criterion(z: torch.Tensor) -> torch.Tensor:
        if y.ndim == 2:
            return soft_target_cross_entropy(z, y)
        return F.cross_entropy(z, y, label_smoothing=smoothing)

    loss = criterion(logits)
    for aux_logits in aux:
        loss = loss + AUX_LOSS_WEIGHT * criterion(aux_logits)
    return loss, logits


@torch.inference_mode()
def evaluate_loader(model: nn.Module, loader, device: torch.device, amp: bool = False) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``loader`` (no label smoothing):
    ``{"loss": ..., "acc": ...}``."""
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for x, y in loader:
        with autocast(device, amp):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        n += len(y)
    n = max(n, 1)
    return {"loss": loss_sum.item() / n, "acc": correct.item() / n}


class ImageClassification(Task):
    name = "image"
    monitor, higher_is_better = "val_acc", True
    metrics = ("loss", "acc")
    metric_limits = {"acc": (0.0, 1.02)}
    unit, bar_unit = "image", "img"
    # flowers-train, ResNet-18 x0.5 at 128 px, 20 epochs: 76.5 % in bfloat16 against 77.3 % in float32
    # (5 of 587 images, within the spread between seeds), in 92 s against 126 s
    precision_by_timing = True

    def __init__(self, data: DataSplits, preprocessing: Optional[Preprocessing] = None):
        """``preprocessing``: how the model is fed; default: the data's own size, mean and std."""
        if data.val is None or len(data.val) == 0:
            raise UserError(f"data {data.source!r} has no validation split; use a val_fraction above 0")
        self.data = data
        self.source = str(data.source)
        self.preprocessing = preprocessing or Preprocessing(data.image_size, data.mean, data.std)

    @classmethod
    def load(cls, config: TrainConfig, data: Optional[DataSplits] = None, progress: bool = True):
        """The task on ``data`` if given (many models on one split), else on ``config.data``."""
        # Pretrained weights bring their preprocessing: their resolution unless --image-size says
        # otherwise, and always their mean, std and channel order (what the weights learned under).
        # (Resuming, the run's own preprocessing comes back from last.pt: see check_resume.)
        weights = weights_preprocessing(config.weights, config.model) if config.weights and not config.resume else None
        if data is None:
            image_size = config.image_size or (weights.image_size if weights else None)
            data = load_dataset(config.data, image_size=image_size, val_fraction=config.val_fraction,
                                seed=config.seed, cache_dir=config.cache_dir, resize=config.resize,
                                progress=progress, val_source=config.val_data, path_column=config.path_column,
                                label_column=config.label_column)
        own = Preprocessing(data.image_size, data.mean, data.std, resize=config.resize)
        if weights:  # RGB weights adapted to other channels take their average statistics
            weights = weights.for_channels(data.in_chans)
            own = dataclasses.replace(own, mean=weights.mean, std=weights.std, channel_order=weights.channel_order)
        return cls(data, own)

    def summary(self) -> str:
        return self.data.summary()

    @property
    def num_train(self) -> int:
        return len(self.data.train)

    @property
    def class_names(self) -> list[str]:
        return list(self.data.class_names)

    def model_args(self, config: TrainConfig) -> dict:
        """The user's overrides, plus the class count and channels the data imposes."""
        return with_imposed(config.model_args, {"num_classes": self.data.num_classes, "in_chans": self.data.in_chans},
                            self.source)

    def resolve(self, config: TrainConfig, model: nn.Module, device_type: str) -> TrainConfig:
        return resolve_config(config, num_train=self.num_train, image_size=self.data.image_size, model=model,
                              device_type=device_type)

    def loaders(self, config: TrainConfig, device: torch.device, model: nn.Module, shard=(0, 1)):
        batch_size, val = resolved(config.batch_size), self.data.val
        assert val is not None  # __init__ refuses data without a validation split
        common: dict[str, Any] = dict(preprocessing=self.preprocessing, channels_last=resolved(config.channels_last),
                                      device=device, shard=shard)
        size_at = None
        if config.progressive_resize:
            epochs, final = resolved(config.epochs), self.data.image_size
            size_at = lambda epoch: progressive_size(epoch, epochs, final)  # noqa: E731 - a function of the epoch
        train = BatchLoader(self.data.train, batch_size, shuffle=True, augment=config.augment,
                            seed=config.seed, drop_last=True, size_at=size_at, **common)
        return train, BatchLoader(val, max(batch_size, EVAL_BATCH_SIZE), shuffle=False, augment="none",
                                  drop_last=False, **common)

    def mix(self, batch, config: TrainConfig, gen: torch.Generator):
        if not (config.mixup or config.cutmix):
            return batch
        x, y = batch
        mixed = Mixing(config.mixup or 0.0, config.cutmix or 0.0,
                       label_smoothing=config.label_smoothing or 0.0)(x, y, self.data.num_classes, gen)
        return mixed.x, mixed.targets

    def loss(self, model: nn.Module, batch, config: TrainConfig):
        x, y = batch
        return classification_loss(model, x, y, resolved(config.label_smoothing))

    def train_metrics(self, device: torch.device) -> Accuracy:
        return Accuracy(device)

    def evaluate(self, model: nn.Module, loader, device: torch.device, amp: bool) -> dict[str, float]:
        return evaluate_loader(model, loader, device, amp)

    def test_metrics(self, model: nn.Module, config: TrainConfig,
                     device: torch.device) -> Optional[tuple[dict[str, float], int]]:
        test = self.data.test
        if test is None or len(test) == 0:
            return None
        loader = BatchLoader(test, max(resolved(config.batch_size), EVAL_BATCH_SIZE), shuffle=False,
                             preprocessing=self.preprocessing, channels_last=resolved(config.channels_last),
                             device=device)
        return evaluate_loader(model, loader, device, bool(config.amp)), len(test)

    def checkpoint_fields(self, config: TrainConfig) -> ImageFields:
        # Everything predict needs to feed one image exactly as training did.
        return ImageFields(tuple(self.class_names), self.preprocessing)

    def check_resume(self, saved: Checkpoint) -> None:
        prep = saved.image.preprocessing
        if prep.image_size != self.data.image_size:
            raise UserError(f"cannot resume: the run used {prep.image_size} px images, "
                            f"the data now gives {self.data.image_size} px")
        # normalise exactly as the run did (its data's statistics, or its starting weights')
        self.preprocessing = prep
