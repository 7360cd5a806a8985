"""Audio folders (any format, rate, depth; mono; resampled), μ-law, and windows of signals as batches."""
import math
import warnings

import numpy as np
import pytest
import soundfile
import torch

from cnnzoo.data.audio import SkippedAudioWarning, load_audio_folder, read_audio
from cnnzoo.data.mulaw import mu_law_decode, mu_law_encode
from cnnzoo.data.splits import DataError
from cnnzoo.data.windows import SignalSet, WindowLoader
from cnnzoo.errors import UserError


def tone(rate: int, seconds: float, hz: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * hz * t)
    return np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1)  # [T, channels]


def peak_hz(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[spectrum.argmax()])


# --- μ-law ---
def test_mu_law_round_trip():
    classes = torch.arange(256)
    assert torch.equal(mu_law_encode(mu_law_decode(classes)), classes)  # decode lands on each class's centre
    assert mu_law_encode(0.0).item() == 128 and mu_law_decode(torch.tensor([0, 255])).tolist() == [-1.0, 1.0]
    x = torch.linspace(-1, 1, 100_001)
    restored = mu_law_decode(mu_law_encode(x))
    compand = lambda v: torch.sign(v) * torch.log1p(255 * v.abs()) / math.log1p(255)
    # quantisation is uniform in the companded domain: at most half a step (1 / mu) off there...
    assert (compand(restored) - compand(x)).abs().max() <= 1 / 255 + 1e-6
    # ...which is fine near silence and coarse only for loud samples
    assert (restored - x).abs()[x.abs() < 0.01].max() < 3e-4
    assert (restored - x).abs().max() < 0.025
    assert mu_law_encode(np.array([-3.0, 3.0])).tolist() == [0, 255]  # clipped, numpy accepted


# --- reading audio ---
@pytest.mark.parametrize("fmt, subtype, suffix", [("WAV", "PCM_16", ".wav"), ("WAV", "FLOAT", ".wav"),
                                                  ("FLAC", "PCM_24", ".flac"), ("OGG", "VORBIS", ".ogg")])
def test_any_format_and_depth_is_read_mixed_to_mono_and_resampled(tmp_path, fmt, subtype, suffix):
    path = tmp_path / f"a{suffix}"
    soundfile.write(path, tone(22050, 0.5, 440, channels=2), 22050, format=fmt, subtype=subtype)
    signal = read_audio(path, 8000)
    assert signal.dtype == np.float32 and signal.ndim == 1
    assert abs(len(signal) - 4000) <= 1
    assert abs(peak_hz(signal, 8000) - 440) < 5  # the pitch survives resampling
    # mono is the mean of the channels (0.5 and 1.0 times the tone): amplitude 0.375
    assert 0.33 < np.abs(signal[500:-500]).max() < 0.42


def test_a_folder_reads_every_file_in_sorted_order(tmp_path):
    (tmp_path / "sub").mkdir()
    soundfile.write(tmp_path / "b.wav", tone(8000, 0.25, 200), 8000)
    soundfile.write(tmp_path / "sub" / "a.flac", tone(16000, 0.5, 300), 16000)
    (tmp_path / "notes.txt").write_text("not audio, and not an audio extension: ignored")
    audio = load_audio_folder(tmp_path, sample_rate=8000)
    assert audio.names == ["b.wav", "sub/a.flac"] and not audio.skipped
    assert [len(s) for s in audio.signals] == [2000, 4000]
    assert audio.seconds == pytest.approx(0.75) and "2 audio files" in audio.summary()
    single = load_audio_folder(tmp_path / "b.wav", sample_rate=8000)  # one file is a folder of one
    assert single.names == ["b.wav"]


def test_bad_files_are_named_and_skipped_with_one_warning(tmp_path):
    soundfile.write(tmp_path / "good.wav", tone(8000, 0.25, 200), 8000)
    (tmp_path / "text.wav").write_text("this is not a RIFF file")
    (tmp_path / "empty.flac").write_bytes(b"")
    soundfile.write(tmp_path / "silent.ogg", np.zeros((0, 1)), 8000, format="WAV")  # no samples at all
    with pytest.warns(SkippedAudioWarning) as caught:
        audio = load_audio_folder(tmp_path, sample_rate=8000)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "3 unreadable audio files" in message
    assert all(name in message for name in ("text.wav", "empty.flac", "silent.ogg"))
    assert audio.names == ["good.wav"] and len(audio.skipped) == 3


def test_a_folder_with_nothing_readable_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_audio_folder(tmp_path / "missing", 8000)
    with pytest.raises(DataError, match="no audio files"):
        load_audio_folder(tmp_path, 8000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the error says it all: no warning besides
        with pytest.raises(UserError, match=r"none of the 1 audio files .*broken\.wav"):
            load_audio_folder(tmp_path, 8000)


def test_validation_is_the_end_of_every_file(tmp_path):
    soundfile.write(tmp_path / "a.wav", np.linspace(-0.5, 0.5, 1000), 8000, subtype="FLOAT")
    train, val = load_audio_folder(tmp_path, 8000).split(val_fraction=0.1)
    assert train.signals[0].shape == (1, 900) and val.signals[0].shape == (1, 100)
    assert train.signals[0].max() < val.signals[0].min()  # a rising ramp: val comes after train


# --- windows and batches ---
def ramp_set(lengths=(300, 130, 50), channels=1) -> SignalSet:
    """Each signal counts up from a distinct base, so a window crossing two signals would show."""
    signals = [np.stack([np.arange(n, dtype=np.float32) + 1000 * i + 100_000 * c for c in range(channels)])
               for i, n in enumerate(lengths)]
    return SignalSet(signals, [f"s{i}" for i in range(len(lengths))])


def test_batches_are_windows_with_targets_one_step_later():
    loader = WindowLoader(ramp_set(channels=2), window=32, batch_size=4, target="continuous", hop=16, seed=1)
    # windows of 33 samples every 16 steps: 17 in the first signal, 7 in the second, 2 in the third
    assert loader.num_windows == 17 + 7 + 2 and len(loader) == 7
    count = 0
    for x, y in loader:
        assert x.shape == y.shape and x.shape[1:] == (2, 32) and x.dtype == torch.float32
        torch.testing.assert_close(y[..., :-1], x[..., 1:])
        assert ((x[..., 1:] - x[..., :-1]) == 1).all()  # consecutive samples of one signal: never a seam
        torch.testing.assert_close(x[:, 1] - x[:, 0], torch.full_like(x[:, 0], 100_000))
        count += len(x)
    assert count == 26


def test_order_and_cuts_depend_only_on_seed_and_epoch():
    a = WindowLoader(ramp_set(), window=20, batch_size=3, target="continuous", seed=4)
    b = WindowLoader(ramp_set(), window=20, batch_size=3, target="continuous", seed=4)
    a.set_epoch(2)
    list(b)
    list(b)  # b walks through epochs 0 and 1, then reaches 2 by itself
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    starts = [np.concatenate(a.window_starts(e)) for e in range(3)]
    assert not np.array_equal(starts[0], starts[1])  # another order and other cuts each epoch
    other_seed = WindowLoader(ramp_set(), window=20, batch_size=3, target="continuous", seed=5)
    assert not np.array_equal(starts[0], np.concatenate(other_seed.window_starts(0)))
    assert len(starts[0]) == len(starts[1])  # the same number of windows every epoch


def test_validation_windows_are_in_order_on_the_grid():
    loader = WindowLoader(ramp_set((100,)), window=30, batch_size=2, target="continuous", shuffle=False)
    assert np.concatenate(loader.window_starts(0)).tolist() == [0, 30, 60]
    assert [len(x) for x, _ in loader] == [2, 1]
    dropped = WindowLoader(ramp_set((100,)), window=30, batch_size=2, target="continuous", shuffle=False,
                             drop_last=True)
    assert len(dropped) == 1 and [len(x) for x, _ in dropped] == [2]


def test_mulaw_batches_are_classes_of_the_audio():
    signal = np.sin(np.arange(500) / 7).astype(np.float32)[None] * 0.9
    loader = WindowLoader(SignalSet([signal], ["sine"]), window=64, batch_size=2, target="mulaw")
    x, y = next(iter(loader))
    assert x.dtype == torch.long and x.shape == (2, 64) and torch.equal(y[:, :-1], x[:, 1:])
    start = int(np.concatenate(loader.window_starts(0))[0])
    assert torch.equal(x[0], mu_law_encode(signal[0, start:start + 64]))


def test_unusable_windows_are_clear_errors():
    with pytest.raises(DataError, match="longest has 50"):
        WindowLoader(ramp_set((50, 20)), window=50, batch_size=2, target="continuous")
    with pytest.raises(DataError, match="one channel"):
        WindowLoader(ramp_set(channels=2), window=10, batch_size=2, target="mulaw")
