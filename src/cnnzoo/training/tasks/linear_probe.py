"""``--finetune linear``: train only the classifier, on features of the frozen backbone computed once.

With the backbone frozen and in eval mode (no augmentation), its pooled features of an image never
change, so they are computed once per image - one forward pass over the data - and every epoch then
trains a linear layer on a ``[N, num_features]`` matrix: on a CPU, minutes per epoch become
milliseconds. The batches are those ``BatchLoader`` would draw (the same order for the same
``(seed, epoch)``, so resuming stays exact), and the loss is the one the whole model would give
with that backbone: cross-entropy with label smoothing on ``get_classifier()(features)``. The head
has no dropout here (the features are taken after the pooling, before any dropout of the head).
The checkpoint still holds the whole model.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.data import BatchLoader
from cnnzoo.data.loader import epoch_batches, epoch_generator
from cnnzoo.errors import UserError
from cnnzoo.models import Classifier
from cnnzoo.training.config import TrainConfig
from cnnzoo.training.distributed import unwrap_model
from cnnzoo.training.features import pooled_features
from cnnzoo.training.tasks.image import EVAL_BATCH_SIZE, ImageClassification


class _Features:
    """The backbone's pooled features of the train and val images, computed at first use.

    At first use rather than when the loaders are made: a resumed run restores the model's weights
    after making its loaders, and the features must be those of the weights that train.
    """

    def __init__(self, model: nn.Module, sources: dict[str, BatchLoader], amp: bool):
        self.model, self.sources, self.amp = model, sources, amp
        self._cache: Optional[dict[str, tuple[torch.Tensor, torch.Tensor]]] = None

    def get(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is None:
            self._cache = {name: pooled_features(self.model, loader, amp=self.amp)
                           for name, loader in self.sources.items()}
        return self._cache[split]


class FeatureLoader:
    """``(features, labels)`` batches drawn as :class:`cnnzoo.data.BatchLoader` draws images: shuffled,
    a permutation from ``epoch_generator(seed, epoch)`` cut into batches (the last partial one dropped
    with ``drop_last``), each sorted; unshuffled, in order."""

    def __init__(self, features: _Features, split: str, num: int, batch_size: int, *, shuffle: bool,
                 seed: int = 0, drop_last: bool = False):
        self.features, self.split = features, split
        self.num_samples, self.batch_size = num, int(batch_size)
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """The sorted sample indices of every batch of ``epoch`` (BatchLoader's, for the same settings)."""
        return epoch_batches(self.num_samples, self.batch_size, epoch_generator(self.seed, epoch),
                             shuffle=self.shuffle, drop_last=self.drop_last)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        x, y = self.features.get(self.split)
        for idx in self.batch_indices(epoch):
            index = torch.from_numpy(idx).to(x.device)
            yield x[index], y[index]


class LinearProbe(ImageClassification):
    """Image classification with a frozen backbone: only ``model.get_classifier()`` learns, on cached
    features. Freeze the backbone before building the optimizer
    (:func:`cnnzoo.training.finetune.freeze_backbone`), so that only the head is in it.

    Under torchrun every process trains on whole batches and validates on all the data (``shard`` is
    not used): for a linear layer there is nothing worth splitting, and processes that compute the
    same thing stay identical without exchanging gradients (the loss calls the classifier directly,
    not through DistributedDataParallel's wrapper, which would run the whole model).
    """

    precision_by_timing = False  # the head alone trains, on features computed once: nothing to gain

    def resolve(self, config: TrainConfig, model: nn.Module, device_type: str) -> TrainConfig:
        """The image task's defaults, with augmentation "none": the features are computed once, so
        the config (and history.json) says what the run really did. A model whose classifier is not
        a linear layer on its pooled features (SqueezeNet's 1x1 convolution before the pooling) is
        refused: its classifier cannot be trained on the pooled features."""
        classifier = _classifier(model)
        if not isinstance(classifier, nn.Linear):
            raise UserError(f"--finetune linear trains a linear classifier on pooled features; {config.model}'s "
                            f"classifier is a {type(classifier).__name__}, applied before the pooling. "
                            "Use --finetune full (or gradual) for this model")
        if config.augment not in (None, "none"):
            raise UserError(f"--finetune linear computes each image's features once, without augmentation; "
                            f"--augment {config.augment} cannot apply. Leave --augment unset, or use "
                            "--finetune full or gradual")
        return super().resolve(dataclasses.replace(config, augment="none"), model, device_type)

    def loaders(self, config: TrainConfig, device: torch.device, model: nn.Module, shard=(0, 1)):
        train_set, val_set, batch_size = self.data.train, self.data.val, config.batch_size
        # resolve_config has set the batch size, and image data always has both splits
        assert train_set is not None and val_set is not None and batch_size is not None
        batch = max(batch_size, EVAL_BATCH_SIZE)
        sources = {name: BatchLoader(images, batch, shuffle=False, preprocessing=self.preprocessing,
                                     channels_last=bool(config.channels_last), device=device)
                   for name, images in (("train", train_set), ("val", val_set))}
        features = _Features(unwrap_model(model), sources, bool(config.amp))
        train = FeatureLoader(features, "train", len(train_set), batch_size, shuffle=True,
                              seed=config.seed, drop_last=True)
        val = FeatureLoader(features, "val", len(val_set), batch, shuffle=False)
        return train, val

    def loss(self, model: nn.Module, batch, config: TrainConfig):
        features, y = batch
        logits = _classifier(model)(features)
        return F.cross_entropy(logits, y, label_smoothing=config.label_smoothing or 0.0), logits

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader, device: torch.device, amp: bool) -> dict[str, float]:
        """Validation loss and accuracy of the classifier on the cached validation features: what the
        whole model gives on those images, since its backbone does not change."""
        classifier = _classifier(model)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for x, y in loader:
            logits = classifier(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
            correct += (logits.argmax(1) == y).sum()
        n = max(loader.num_samples, 1)
        return {"loss": loss_sum.item() / n, "acc": correct.item() / n}


def _classifier(model: nn.Module) -> nn.Module:
    """The model's classifier (``get_classifier()``), through a DistributedDataParallel wrapper."""
    net = unwrap_model(model)
    if not isinstance(net, Classifier):
        raise UserError(f"--finetune linear needs a classifier head (get_classifier()); {type(net).__name__} has none")
    return net.get_classifier()
