"""WaveNet on audio: a folder of audio files (or one file) at the model's sample rate, as 256-way μ-law
classes (``--sample-rate`` to change the rate, ``--condition-on-folders`` for one condition id per
sub-folder). The windows, defaults and validation are those of every windowed task
(:mod:`cnnzoo.training.tasks.windowed`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch

from cnnzoo.checkpoint import AudioFields
from cnnzoo.data.windows import SignalSet
from cnnzoo.errors import UserError
from cnnzoo.registry import get_model_info
from cnnzoo.training.config import TrainConfig
from cnnzoo.training.tasks.windowed import WindowedTask

if TYPE_CHECKING:
    from cnnzoo.data.audio import AudioSet


class AudioTask(WindowedTask):
    """WaveNet learning the next μ-law class of audio signals; its readable metric is the accuracy."""

    fields_type = AudioFields
    metrics = ("loss", "acc")
    metric_limits = {"acc": (0.0, 1.02)}

    def __init__(self, audio: AudioSet, train: SignalSet, val: SignalSet, val_fraction: float):
        super().__init__(train, val, audio.source, val_fraction, audio.condition_names)
        self.audio = audio
        self.sample_rate: Optional[int] = audio.sample_rate

    @classmethod
    def load(cls, config: TrainConfig, data: Optional[AudioSet] = None, progress: bool = True) -> AudioTask:
        """The task on ``data`` (audio already read) if given, else on the audio at ``config.data``."""
        if data is None:
            data = _read_audio(Path(config.data), _sample_rate(config), bool(config.condition_on_folders))
        if config.columns is not None:
            raise UserError(f"--columns chooses columns of a CSV series; {data.source!r} is audio")
        train, val = data.split(config.val_fraction)
        return cls(data, train, val, config.val_fraction)

    def summary(self) -> str:
        rate = self.audio.sample_rate
        return (f"{self.audio.summary()}; training {self.train.total_samples / rate:.1f} s, validation "
                f"{self.val.total_samples / rate:.1f} s (the last {self.val_fraction:.0%} of every file)")

    def imposed_args(self) -> dict[str, Any]:
        return {"sample_rate": self.audio.sample_rate}

    def describe_data(self, window: int) -> tuple[str, str]:
        rate = self.audio.sample_rate
        return (f"μ-law audio at {rate} Hz",
                f"{window} samples ({window / rate:.3g} s, {window / self.receptive_field:.1f} receptive fields)")

    def metric_sum(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Right guesses of the next μ-law class."""
        return (outputs.argmax(1) == y).sum().double()

    def checkpoint_fields(self, config: TrainConfig) -> AudioFields:
        """What ``generate`` needs besides the model: the rate and μ-law classes, the files, the conditions."""
        windowing = self.bound
        return AudioFields(receptive_field=windowing.receptive_field, window=windowing.window,
                           validation_context=windowing.context, train_samples=self.num_train,
                           sample_rate=int(self.audio.sample_rate), quantization=windowing.quantization,
                           files=tuple(self.audio.names), conditions=tuple(self.condition_names))

    def check_fields(self, fields: AudioFields) -> None:
        if fields.sample_rate != self.audio.sample_rate:
            raise UserError(f"cannot resume: the run used audio at {fields.sample_rate} Hz, now "
                            f"{self.audio.sample_rate} Hz (--sample-rate)")
        if list(fields.conditions) != self.condition_names:
            raise UserError(f"cannot resume: the run was conditioned on {list(fields.conditions) or 'nothing'}, "
                            f"now on {self.condition_names or 'nothing'} (--condition-on-folders)")


def _sample_rate(config: TrainConfig) -> int:
    """``--sample-rate``, else the model's (its override, or its registered default)."""
    if config.sample_rate is not None:
        return config.sample_rate
    return int(config.model_args.get("sample_rate") or get_model_info(config.model).defaults["sample_rate"])


def _read_audio(path: Path, sample_rate: int, condition_on_folders: bool) -> AudioSet:
    # soundfile and scipy are the optional "audio" extra and slow to import (docs/wavenet-notes.md):
    # imported by a run that reads audio only.
    from cnnzoo.data.audio import load_audio_folder

    return load_audio_folder(path, sample_rate, condition_on_folders)

