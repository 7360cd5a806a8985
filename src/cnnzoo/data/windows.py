"""Signals (audio or time series) cut into training windows, and batches of them for WaveNet.

    from cnnzoo.data.audio import load_audio_folder
    train, val = load_audio_folder("speech/", sample_rate=8000).split(val_fraction=0.1)
    loader = WindowLoader(train, window=4096, batch_size=8, target="mulaw", seed=0)
    for epoch in range(3):
        loader.set_epoch(epoch)
        for x, y in loader: ...   # mulaw: x, y int64 [B, W]; continuous: x, y float32 [B, C, W]

A set with ``conditions`` gives ``(x, y, c)``: ``c`` int64 ``[B]``, each window's signal's id.

``y`` is ``x`` shifted by one step (``y[..., t] == x[..., t + 1]`` within the signal): the
prediction targets of a model whose output ``t`` predicts sample ``t + 1``. Which windows form which
batch, and where each window starts, are a function of ``(seed, epoch)`` only, as for images
(:class:`cnnzoo.data.BatchLoader`): that is what makes resuming exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import torch

from cnnzoo.data.loader import epoch_batches, epoch_generator
from cnnzoo.data.mulaw import mu_law_encode
from cnnzoo.data.splits import DataError

TARGETS = ("mulaw", "continuous")


@dataclass
class SignalSet:
    """One split: ``signals`` float32 ``[C, T]`` each (several files, or one series), with their names,
    and for a conditioned model each signal's condition id (a speaker, say)."""

    signals: list[np.ndarray]
    names: list[str]
    conditions: Optional[list[int]] = None

    def __post_init__(self):
        self.signals = [np.ascontiguousarray(s, dtype=np.float32) for s in self.signals]
        if any(s.ndim != 2 for s in self.signals):
            raise ValueError("signals must be [C, T] arrays")
        if len({s.shape[0] for s in self.signals}) > 1:
            raise ValueError("every signal of a set needs the same number of channels")
        if len(self.names) != len(self.signals):
            raise ValueError(f"{len(self.signals)} signals but {len(self.names)} names")
        if self.conditions is not None and len(self.conditions) != len(self.signals):
            raise ValueError(f"{len(self.signals)} signals but {len(self.conditions)} conditions")

    @property
    def channels(self) -> int:
        return self.signals[0].shape[0] if self.signals else 0

    @property
    def total_samples(self) -> int:
        return sum(s.shape[1] for s in self.signals)

    def __len__(self) -> int:
        return len(self.signals)

    def __repr__(self) -> str:
        return f"SignalSet({len(self)} signals, {self.channels} channels, {self.total_samples} samples)"


def split_in_time(signal: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``[C, T]`` -> (the first part, the last ``val_fraction`` of it): validation is the end, never mixed in."""
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(signal.shape[-1] * val_fraction))
    boundary = signal.shape[-1] - n_val
    return signal[..., :boundary], signal[..., boundary:]


class WindowLoader:
    """Iterate ``(x, y)`` batches of windows of ``window`` steps over a :class:`SignalSet`: a
    :class:`~cnnzoo.data.loader.Loader`, as the image loader is.

    ``target="mulaw"``: the signal (one channel, in [-1, 1]) is μ-law encoded once, and ``x``, ``y``
    are int64 classes ``[B, window]``; ``"continuous"``: float32 ``[B, C, window]`` as given.

    Windows start every ``hop`` steps (default: ``window``, no overlap) in each signal; a signal
    shorter than ``window + 1`` gives none. With ``shuffle`` (training) the order of the windows is
    random and each start moves forward by a random amount below ``hop`` (staying inside its
    signal), so every epoch sees other cuts of the same data, the same number of them. Without it
    (validation) windows come in order, on the grid.
    """

    def __init__(self, signal_set: SignalSet, window: int, batch_size: int, *, target: str = "mulaw",
                 quantization: int = 256, hop: Optional[int] = None, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, device="cpu"):
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if batch_size < 1 or window < 1:
            raise DataError(f"batch size and window must be at least 1, got {batch_size} and {window}")
        if target == "mulaw" and signal_set.channels != 1:
            raise DataError(f"mulaw targets need one channel (mono audio), got {signal_set.channels}")
        self.window, self.batch_size, self.target = int(window), int(batch_size), target
        self.hop = int(hop or window)
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.device = torch.device(device)
        self.epoch = 0
        self._starts, self._last_starts, self._conditions = self._grid(signal_set)
        data = np.concatenate(signal_set.signals, axis=1) if len(signal_set) else np.zeros((1, 0), np.float32)
        # Encoded once: a batch is then only a gather. int16 holds any quantization up to 32,768 classes.
        self._data = (mu_law_encode(data[0], quantization).to(torch.int16) if target == "mulaw"
                      else torch.from_numpy(data))

    def _grid(self, signal_set: SignalSet) -> tuple[np.ndarray, np.ndarray, Optional[torch.Tensor]]:
        """Every window's first index into the concatenated signals, the last start its signal allows,
        and its signal's condition id (None for an unconditioned set)."""
        need = self.window + 1  # the inputs and, one step later, the last target
        starts, last_starts, conditions, offset = [], [], [], 0
        for i, signal in enumerate(signal_set.signals):
            length = signal.shape[1]
            if length >= need:
                grid = np.arange(0, length - need + 1, self.hop) + offset
                starts.append(grid)
                last_starts.append(np.full(len(grid), offset + length - need))
                if signal_set.conditions is not None:
                    conditions.append(np.full(len(grid), signal_set.conditions[i], dtype=np.int64))
            offset += length
        if not starts:
            longest = max((s.shape[1] for s in signal_set.signals), default=0)
            raise DataError(f"no signal is long enough for one window of {self.window} steps (plus one for the "
                            f"last target): the longest has {longest}. Use a shorter window or longer signals.")
        window_conditions = torch.from_numpy(np.concatenate(conditions)) if conditions else None
        return np.concatenate(starts), np.concatenate(last_starts), window_conditions

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration's order and cuts those of ``epoch``."""
        self.epoch = int(epoch)

    @property
    def num_windows(self) -> int:
        return len(self._starts)

    @property
    def num_samples(self) -> int:
        """Windows per pass (what :class:`~cnnzoo.data.loader.Loader` calls its samples)."""
        return len(self._starts) - len(self._starts) % self.batch_size if self.drop_last else len(self._starts)

    def __len__(self) -> int:
        n = self.num_windows
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def window_starts(self, epoch: int) -> list[np.ndarray]:
        """The first index (into the signals, concatenated) of every window of every batch of ``epoch``."""
        return [starts for starts, _ in self._batches(epoch)]

    def _batches(self, epoch: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(first indices, window numbers) of every batch of ``epoch``."""
        n = self.num_windows
        if not self.shuffle:
            order, starts = np.arange(n), self._starts
        else:
            gen = epoch_generator(self.seed, epoch)
            order = torch.randperm(n, generator=gen).numpy()
            room = np.minimum(self.hop - 1, self._last_starts - self._starts)  # how far each may move
            shift = (torch.rand(n, generator=gen, dtype=torch.float64).numpy() * (room + 1)).astype(np.int64)
            starts = self._starts + shift
        # The shared cut into batches, over positions in ``order``: windows keep their drawn order
        # inside a batch (the helper sorts indices, which suits memmap reads, not this gather).
        positions = epoch_batches(n, self.batch_size, None, shuffle=False, drop_last=self.drop_last)
        return [(starts[order[p]], order[p]) for p in positions]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        steps = torch.arange(self.window + 1)
        for starts, windows in self._batches(epoch):
            index = torch.from_numpy(starts)[:, None] + steps  # [B, window + 1]
            if self.target == "mulaw":
                batch = self._data[index].long()               # [B, window + 1]
            else:
                batch = self._data[:, index].permute(1, 0, 2).contiguous()  # [B, C, window + 1]
            batch = batch.to(self.device, non_blocking=True)
            if self._conditions is None:
                yield batch[..., :-1], batch[..., 1:]
            else:
                yield batch[..., :-1], batch[..., 1:], self._conditions[windows].to(self.device, non_blocking=True)
