"""Batches straight from uint8 arrays (or memmaps): gather, augment and normalise a whole batch at once.

No worker processes and no per-image Python: one sorted fancy-index read per batch, then a few
vectorised torch ops. Order and augmentation are a function of ``(seed, epoch)`` only.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence

import numpy as np
import torch

from cnnzoo.data.augment import Downscale, apply_augment, resolve_augment
from cnnzoo.data.splits import DataError, ImageSet
from cnnzoo.preprocessing import Preprocessing


class Loader(Protocol):
    """What the training loop reads batches through (images, cached features, sequence windows).

    ``set_epoch(e)`` makes the next pass's order and augmentation those of epoch ``e`` (a function of
    the seed and ``e`` only: what makes resuming exact); ``len()`` is the batches of a pass;
    ``num_samples`` the samples this process reads per pass (its part, under torchrun);
    ``batch_size`` the (global) batch it was made with.
    """

    batch_size: int

    def set_epoch(self, epoch: int) -> None: ...

    def __len__(self) -> int: ...

    @property
    def num_samples(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator whose stream depends only on ``(seed, epoch)``."""
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def epoch_batches(num: int, batch_size: int, generator: Optional[torch.Generator], *, shuffle: bool,
                  drop_last: bool) -> list[np.ndarray]:
    """The sorted sample indices of each batch of one pass over ``num`` samples: a permutation drawn
    from ``generator`` cut into batches when shuffling, else ``0..num-1`` in order; with ``drop_last``
    the last partial batch is left out. Sorted within a batch: memmap reads go forward."""
    order = torch.randperm(num, generator=generator).numpy() if shuffle else np.arange(num)
    last = num + 1 if drop_last else num + batch_size  # drop_last: no stop past the end
    return [np.sort(order[stop - batch_size:stop]) for stop in range(batch_size, last, batch_size)]


class BatchLoader:
    """Iterate ``(x, y)`` batches over an :class:`ImageSet`.

    ``x`` is float32 ``[B, 3, H, W]``, ``(pixels / 255 - mean) / std`` (``channels_last`` when asked);
    ``y`` is int64 ``[B]``. ``augment`` is a preset name from ``AUGMENT_PRESETS`` or a list of steps.
    ``preprocessing`` gives the channel order, mean and std a model takes (its size and resize mode
    were applied when the images were prepared); or give ``mean``/``std`` alone (data statistics).
    Neither: no shift and no scaling (just / 255).

    Call ``set_epoch(e)`` before each epoch for exact resumption; iterating again without it moves
    on to the next epoch, so a loop that never calls it still sees a fresh order every epoch.
    Within a batch, images come in index order (faster memmap reads); which images form a batch is random.

    ``shard=(rank, world_size)``: several processes (torchrun) share each batch. Every process draws
    the same global batches and yields its own contiguous part of each - ``batch_size`` stays the
    global batch and must divide evenly - so order and augmentation are exactly those of one
    process reading the whole batch. Without shuffling (validation), each process gets a contiguous
    part of the data instead, every image in exactly one part.

    ``size_at(epoch) -> side``: progressive resizing (e.g. :func:`~cnnzoo.data.augment.progressive_size`);
    epochs whose side is below the images' own end with a :class:`~cnnzoo.data.augment.Downscale` to it.
    """

    def __init__(self, image_set: ImageSet, batch_size: int, *, shuffle: bool = True, augment="none",
                 seed: int = 0, drop_last: bool = False, mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None, channels_last: bool = False, device="cpu",
                 shard: tuple[int, int] = (0, 1), preprocessing: Optional[Preprocessing] = None,
                 size_at: Optional[Callable[[int], int]] = None):
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        if len(image_set) == 0:
            raise DataError("cannot load batches from an empty split")
        rank, world = shard
        if shuffle and world > 1 and batch_size % world:
            raise DataError(f"the batch size {batch_size} does not split evenly across {world} processes; "
                            f"use a multiple of {world}")
        if not shuffle and world > 1:  # evaluation: a contiguous part of the data per process
            n = len(image_set)
            part = slice(n * rank // world, n * (rank + 1) // world)
            image_set = ImageSet(image_set.images[part], np.asarray(image_set.labels)[part])
            rank, world = 0, 1
        self.rank, self.world_size = rank, world
        self.image_set = image_set
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = resolve_augment(augment)
        self.size_at = size_at
        self.seed = seed
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.device = torch.device(device)
        self.epoch = 0
        if preprocessing is not None:
            mean, std = preprocessing.mean, preprocessing.std
        self._bgr = preprocessing is not None and preprocessing.channel_order == "bgr"
        mean_t = torch.tensor(mean if mean is not None else (0.0, 0.0, 0.0), dtype=torch.float32)
        std_t = torch.tensor(std if std is not None else (1.0, 1.0, 1.0), dtype=torch.float32)
        # (x / 255 - mean) / std == x * scale - shift: one multiply-add per pixel.
        self._scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1).to(self.device)
        self._shift = (mean_t / std_t).view(1, -1, 1, 1).to(self.device)
        self._labels = torch.from_numpy(np.asarray(image_set.labels, dtype=np.int64))

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration's order and augmentation those of ``epoch``."""
        self.epoch = int(epoch)

    @property
    def num_samples(self) -> int:
        """Images this process reads per pass (its part, under torchrun)."""
        return len(self.image_set) // self.world_size

    def __len__(self) -> int:
        n = len(self.image_set)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """The sorted sample indices of every batch of ``epoch`` (what iterating yields, without pixels)."""
        return self._batches(epoch_generator(self.seed, epoch))

    def _batches(self, gen: torch.Generator) -> list[np.ndarray]:
        return epoch_batches(len(self.image_set), self.batch_size, gen, shuffle=self.shuffle, drop_last=self.drop_last)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        gen = epoch_generator(self.seed, epoch)
        steps = self.steps_at(epoch)
        for idx in self._batches(gen):
            yield self._make_batch(idx, gen, steps)

    def steps_at(self, epoch: int) -> list:
        """The augmentation steps of ``epoch``: ``augment``, then a downscale when ``size_at`` says so."""
        if self.size_at is None:
            return self.augment
        size = int(self.size_at(epoch))
        return self.augment + [Downscale(size)] if size < self.image_set.images.shape[-1] else self.augment

    def _my_part(self, batch: np.ndarray) -> slice:
        per = len(batch) // self.world_size
        return slice(self.rank * per, (self.rank + 1) * per)

    def _make_batch(self, idx: np.ndarray, gen: torch.Generator, steps: list) -> tuple[torch.Tensor, torch.Tensor]:
        mine = self._my_part(idx)
        if self.world_size > 1 and not steps:
            idx = idx[mine]  # no random draws to keep in step: read only this process's images
            mine = slice(None)
        pixels = torch.from_numpy(np.ascontiguousarray(self.image_set.images[idx]))
        x = pixels.to(self.device, non_blocking=True)
        # Augmentation draws its random numbers for the whole global batch, as one process would;
        # each process then keeps its part.
        x = apply_augment(steps, x, gen)[mine]
        idx = idx[mine]
        x = x.float() if x.dtype != torch.float32 else x
        if self._bgr:
            x = x.flip(1)
        x = x.mul_(self._scale).sub_(self._shift)  # in place: a third of the memory traffic
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self._labels[idx].to(self.device, non_blocking=True)
        return x, y
