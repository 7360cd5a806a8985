"""A folder of audio files (WAV, FLAC, OGG) as mono float signals at the model's sample rate.

Files are read with soundfile (libsndfile: any bit depth, integer or float) and mixed to mono by
averaging the channels; a file at another rate is resampled with ``scipy.signal.resample_poly``
(a polyphase filter: band-limited, no aliasing from downsampling). A file that cannot be read is
skipped and named, with the others, in one warning; a folder where none can be read is an error.

    audio = load_audio_folder("speech/", sample_rate=8000)
    train, val = audio.split(val_fraction=0.1)   # the last 10% of every file is validation
    WindowLoader(train, window=4096, batch_size=8, target="mulaw")

soundfile and scipy are the optional ``audio`` extra (``pip install cnnzoo[audio]``): import this
module only where audio is read.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import soundfile
from scipy.signal import resample_poly

from cnnzoo.data.mulaw import mu_law_decode, mu_law_encode
from cnnzoo.data.splits import DataError
from cnnzoo.data.windows import SignalSet, split_in_time
from cnnzoo.files import atomic_open, list_files

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
MAX_LISTED = 20  # skipped files named in the warning

__all__ = ["AUDIO_EXTENSIONS", "AudioSet", "SkippedAudioWarning", "list_audio_files", "load_audio_folder",
           "mu_law_decode", "mu_law_encode", "read_audio", "write_audio"]


class SkippedAudioWarning(UserWarning):
    """Some audio files could not be read and were left out."""


@dataclass
class AudioSet:
    """Mono float32 signals ``[T]`` at ``sample_rate``, one per readable file, named by their path
    relative to ``source``; ``skipped`` lists the unreadable files with the reason."""

    signals: list[np.ndarray]
    names: list[str]
    sample_rate: int
    source: str
    skipped: list[str] = field(default_factory=list)
    # with condition_on_folders: the sub-folder names (sorted), and each signal's index into them
    condition_names: list[str] = field(default_factory=list)
    conditions: Optional[list[int]] = None

    @property
    def seconds(self) -> float:
        return sum(len(s) for s in self.signals) / self.sample_rate

    def summary(self) -> str:
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        conditioned = (f", conditioned on {len(self.condition_names)} folders ({_listing(self.condition_names)})"
                       if self.conditions is not None else "")
        return (f"{self.source}: {len(self.signals)} audio file{'s' if len(self.signals) != 1 else ''}, "
                f"{self.seconds:.1f} s at {self.sample_rate} Hz{skipped}{conditioned}")

    def split(self, val_fraction: float = 0.1) -> tuple[SignalSet, SignalSet]:
        """(train, val): the last ``val_fraction`` of every file is validation, the rest training, so a
        single recording splits too and no validation sample is ever inside a training window."""
        parts = [split_in_time(signal[None], val_fraction) for signal in self.signals]
        return (SignalSet([train for train, _ in parts], list(self.names), self.conditions),
                SignalSet([val for _, val in parts], list(self.names), self.conditions))


def list_audio_files(root: Path) -> list[Path]:
    """Audio files under ``root`` (recursively, sorted; hidden files and other extensions ignored)."""
    return list_files(root, AUDIO_EXTENSIONS)


def read_audio(path: Union[str, os.PathLike], sample_rate: int) -> np.ndarray:
    """One file as mono float32 ``[T]`` at ``sample_rate``. Raises what soundfile raises for a bad
    file, and ValueError for one with no samples or with non-finite ones."""
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # [T, channels], ints scaled to [-1, 1)
    if data.size == 0:
        raise ValueError("no samples")
    mono = data.mean(axis=1)
    if not np.isfinite(mono).all():
        raise ValueError("non-finite samples")
    if rate != sample_rate:
        divisor = math.gcd(int(rate), int(sample_rate))
        mono = resample_poly(mono, sample_rate // divisor, rate // divisor)
    return np.ascontiguousarray(mono, dtype=np.float32)


def write_audio(path: Union[str, os.PathLike], signal: np.ndarray, sample_rate: int) -> Path:
    """A mono float signal in [-1, 1] (``[T]``) as a 16-bit PCM WAV file, written atomically: a
    reader never sees half a file, and a failed write leaves the old one."""
    path = Path(path)
    with atomic_open(path) as f:
        soundfile.write(f, np.clip(np.asarray(signal, dtype=np.float32), -1.0, 1.0), int(sample_rate),
                        format="WAV", subtype="PCM_16")
    return path


def load_audio_folder(root: Union[str, os.PathLike], sample_rate: int,
                      condition_on_folders: bool = False) -> AudioSet:
    """Every audio file under ``root`` (a folder, or one file), mono, at ``sample_rate``. With
    ``condition_on_folders``, each file's condition is the sub-folder of ``root`` it is in."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"no such file or folder: {root}")
    paths = [root] if root.is_file() else list_audio_files(root)
    if not paths:
        raise DataError(f"no audio files in {root} (extensions: {', '.join(AUDIO_EXTENSIONS)})")
    folder_of = _condition_folders(root, paths) if condition_on_folders else None
    signals, names, skipped = [], [], []
    for path in paths:
        name = path.name if path == root else path.relative_to(root).as_posix()
        try:
            signals.append(read_audio(path, sample_rate))
            names.append(name)
        except Exception as error:  # libsndfile and numpy raise many kinds for a bad file
            skipped.append(f"{name} ({_reason(error)})")
    if not signals:
        raise DataError(f"none of the {len(paths)} audio files in {root} could be read: {_listing(skipped)}")
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable audio file{'s' if len(skipped) > 1 else ''} in {root}: "
                      f"{_listing(skipped)}", SkippedAudioWarning, stacklevel=2)
    audio = AudioSet(signals, names, sample_rate, str(root), skipped)
    if folder_of is not None:
        # Ids follow the folders that kept a readable file, sorted: the same data gives the same ids.
        audio.condition_names = sorted({folder_of[name] for name in names})
        audio.conditions = [audio.condition_names.index(folder_of[name]) for name in names]
    return audio


def _condition_folders(root: Path, paths: list[Path]) -> dict[str, str]:
    """Each file's name (relative to ``root``) -> the sub-folder of ``root`` it is in."""
    if root.is_file():
        raise DataError(f"conditioning on folders needs a folder of sub-folders (speaker/clip.wav), not one file: "
                        f"{root}")
    relative = [path.relative_to(root) for path in paths]
    loose = [r.as_posix() for r in relative if len(r.parts) == 1]
    if loose:
        raise DataError(f"conditioning on folders: every file must be in a sub-folder of {root} (one per speaker: "
                        f"speaker/clip.wav); these are not: {_listing(loose)}")
    folders = {r.as_posix(): r.parts[0] for r in relative}
    if len(set(folders.values())) < 2:
        raise DataError(f"conditioning on folders needs at least two sub-folders of {root} with audio (one per "
                        f"speaker); found {', '.join(sorted(set(folders.values())))}")
    return folders


def _reason(error: Exception) -> str:
    # libsndfile's own words ("Format not recognised."), without the path its message repeats.
    text = getattr(error, "error_string", None) or str(error) or type(error).__name__
    return text.strip().rstrip(".")


def _listing(items: list[str]) -> str:
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more
