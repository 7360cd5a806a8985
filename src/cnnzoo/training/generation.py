"""Using a trained WaveNet: generate audio, forecast a series. What ``cnnzoo generate`` and
``cnnzoo forecast`` call.

    audio = generate_audio("runs/wavenet_small-speech/best.pt", seconds=2)           # sampling, T = 1
    audio.save("speech.wav")                                                          # + speech.png
    fc = forecast_series("runs/wavenet_small-sunspots/best.pt", "sunspots.csv", horizon=30)
    fc.save("forecast.csv")                                                           # + forecast.png
    fc = forecast_series(checkpoint, "sales.csv", horizon=12, samples=200, backtest=3)
    print(fc.backtest.table()); fc.save("next.csv")      # + p10/p50/p90 columns, a shaded band, backtest.csv
    fcs = forecast_series("runs/wavenet_small-stores/best.pt", "stores.csv", horizon=12)   # a global model:
    fcs.save("stores_next.csv")                          # a PanelForecast, a series column, a panel each

Both run the incremental path (:meth:`cnnzoo.models.wavenet.WaveNet.generate`: one step per layer
per sample, Paine et al. 2016) and read everything they need from the checkpoint's task fields:
:class:`~cnnzoo.checkpoint.AudioFields` (sample rate, μ-law classes, conditions) for audio;
:class:`~cnnzoo.checkpoint.SeriesFields` (columns, step column, standardisation, and the series' last
receptive field, so a forecast can continue it without the CSV) for a series.

Sampling is explicit. ``generate`` samples at ``temperature`` 1 by default; ``temperature=0`` is the
argmax, deterministic, and for an unconditioned model often a constant. ``forecast`` follows the
predicted means by default (``temperature=0``: a point forecast); above 0 it draws one sample path.
With ``samples`` it draws that many paths besides, for the 10th, 50th and 90th percentiles. A
series' forecast goes through :class:`SeriesForecaster`: the checkpoint's transform
(:mod:`cnnzoo.data.series_transforms`) and standardisation on the way in, both inverted on the way
out, so the forecast is in the CSV's units; ``backtest`` scores it on the history's end against the
baselines (:mod:`cnnzoo.training.backtest`). A global model of several series (its checkpoint's
``members``) forecasts each series with that series' own standardisation: a :class:`PanelForecast`
of one :class:`Forecast` per series (``series=`` picks one).

In a notebook, a :class:`Forecast` or :class:`PanelForecast` ending a cell shows its table, backtest
and plot, and :class:`GeneratedAudio` an inline player with its waveform (``_repr_html_``).
"""
from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, TypeVar, Union, cast

import numpy as np
import torch

from cnnzoo.checkpoint import AudioFields, Checkpoint, SeriesFields, SeriesMember, load_checkpoint
from cnnzoo.data.mulaw import mu_law_decode, mu_law_encode
from cnnzoo.data.series import Series, continue_steps, read_panel_csv, read_series_csv
from cnnzoo.data.series_transforms import SeriesTransform, parse_transform, relevel
from cnnzoo.devices import num_threads, pick_device
from cnnzoo.display import audio_html, html_table, new_figure, report_html
from cnnzoo.errors import UserError
from cnnzoo.files import atomic_write_text, save_figure
from cnnzoo.models.wavenet import WaveNet
from cnnzoo.training.backtest import Backtest, PanelBacktest, run_backtest

PathLike = Union[str, os.PathLike]
Fields = TypeVar("Fields", AudioFields, SeriesFields)
# One step of the incremental path is a dozen products of a few hundred numbers each: far too small
# to share between threads, which only add synchronisation (docs/wavenet-notes.md;
# benchmarks/bench_wavenet_generation.py --threads measures it).
GENERATION_THREADS = 1
SPECTROGRAM_RANGE_DB = 80  # shown below the loudest bin (16-bit audio spans about 96 dB)
HISTORY_SHOWN = 8  # a forecast's plot shows this many horizons of history before it (at least 100 steps)


# ------------------------------------------------------------------------------- checkpoints

# What a WaveNet checkpoint of each kind is for, said when it is given to the other command.
USED_BY = {AudioFields: "trained on audio: use `cnnzoo generate`",
           SeriesFields: "trained on a CSV series: use `cnnzoo forecast`"}


def sequence_checkpoint(checkpoint: Union[PathLike, Checkpoint], fields_type: type[Fields],
                        command: str) -> tuple[Checkpoint, Fields]:
    """(the checkpoint, its task fields) of a WaveNet whose fields are a ``fields_type`` (audio or a
    series); anything else is a :class:`UserError` saying what fits."""
    state = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    where = "" if isinstance(checkpoint, Checkpoint) else f"{str(checkpoint)!r} "
    fields = state.fields
    if state.task != "sequence" or fields is None:
        raise UserError(f"{where}is a checkpoint of {state.model_name!r} (task {state.task!r}); "
                        f"{command} needs a WaveNet trained with `cnnzoo train wavenet_small --data ...`")
    if not isinstance(fields, fields_type):
        raise UserError(f"{where}is a WaveNet {USED_BY[type(fields)]}")
    return state, fields


def _model(state: Checkpoint, device: str) -> tuple[WaveNet, torch.device]:
    dev = pick_device(device)
    return cast(WaveNet, state.build_model().to(dev)), dev


def _condition(model: WaveNet, condition: Union[int, str, None], names: Sequence[str] = ()) -> Optional[int]:
    """The id to generate for: ``condition`` as an id, or the name of a folder the model was
    conditioned on (``names``, from ``--condition-on-folders``)."""
    ids = model.config.num_conditions
    if ids == 0 and condition is not None:
        raise UserError("this WaveNet is not conditioned: leave --condition out")
    choices = f"0..{ids - 1}" + (f" or a name: {', '.join(names)}" if names else "")
    if ids and condition is None:
        raise UserError(f"this WaveNet is conditioned on {ids} ids: choose one with --condition {choices}")
    if isinstance(condition, str):
        if condition in names:
            return list(names).index(condition)
        if not condition.strip().lstrip("-").isdigit():
            raise UserError(f"--condition {condition!r} is not one of the model's conditions; choose {choices}")
        condition = int(condition)
    if condition is not None and not 0 <= condition < ids:
        raise UserError(f"--condition must be {choices}; got {condition}")
    return condition


def _check_temperature(temperature: float) -> None:
    if not temperature >= 0:
        raise UserError(f"--temperature must be 0 (argmax / the mean) or more, got {temperature}")


def sampling_description(temperature: float, what: str = "audio") -> str:
    """One line saying how the samples were chosen (the confusion the issue warns about)."""
    if temperature == 0:
        return ("temperature 0: argmax of every step, no sampling (deterministic; an unconditioned audio model "
                "often settles on one value)" if what == "audio"
                else "temperature 0: the predicted mean of every step (a point forecast)")
    return f"sampling at temperature {temperature:g}"


# ------------------------------------------------------------------------------------ audio

@dataclass
class GeneratedAudio:
    """``signal`` float32 ``[T]`` in [-1, 1] at ``sample_rate``; ``classes`` the μ-law classes it decodes."""

    signal: np.ndarray
    classes: np.ndarray
    sample_rate: int
    temperature: float
    seed: int
    seed_samples: int      # samples of seed audio the generation continued (0: from silence)
    generation_s: float    # wall-clock seconds of the generation itself
    model_name: str = ""

    @property
    def seconds(self) -> float:
        return len(self.signal) / self.sample_rate

    @property
    def samples_per_s(self) -> float:
        return len(self.signal) / max(self.generation_s, 1e-9)

    def save(self, path: PathLike, plot: bool = True) -> list[Path]:
        """The signal as a 16-bit WAV at ``path`` (atomically) and, with ``plot``, its waveform and
        spectrogram as a PNG beside it (same name, ``.png``). Returns the files written."""
        path = Path(path)
        written = [_write_audio(path, self.signal, self.sample_rate)]
        if plot:
            written.append(plot_audio(self.signal, self.sample_rate, path.with_suffix(".png"), self._title()))
        return written

    def _title(self) -> str:
        return f"{self.model_name}: {sampling_description(self.temperature).split(' (')[0]}"

    def _repr_html_(self) -> str:
        """In a notebook: the key facts, an inline player and the waveform with its spectrogram."""
        facts = {"length": f"{self.seconds:.2f} s at {self.sample_rate} Hz",
                 "sampling": sampling_description(self.temperature), "seed": self.seed,
                 "continues": f"{self.seed_samples} samples of seed audio" if self.seed_samples else "silence",
                 "speed": f"{self.samples_per_s:,.0f} samples/s"}
        fig = new_figure(9, 5)
        draw_audio(self.signal, self.sample_rate, fig, self._title())
        fig.tight_layout()
        return report_html(f"{self.model_name}: generated audio", facts, tables=[audio_html(self.signal,
                                                                                            self.sample_rate)],
                           figures=[fig])

    def __repr__(self) -> str:
        return (f"GeneratedAudio({self.seconds:.2f} s at {self.sample_rate} Hz, temperature {self.temperature:g}, "
                f"seed {self.seed})")


def generate_audio(checkpoint: Union[PathLike, Checkpoint], seconds: float, *, temperature: float = 1.0,
                   seed_audio: Optional[PathLike] = None, seed: int = 0, condition: Union[int, str, None] = None,
                   device: str = "auto", threads: Optional[int] = GENERATION_THREADS) -> GeneratedAudio:
    """``seconds`` of audio from a WaveNet trained on audio, after ``seed_audio`` (a file, read at the
    model's rate) or from silence. ``seed`` seeds the sampling: the same seed gives the same audio.
    ``threads``: torch's CPU threads for the generation (None: as they are)."""
    state, fields = sequence_checkpoint(checkpoint, AudioFields, "generate")
    if not seconds > 0:
        raise UserError(f"--seconds must be more than 0, got {seconds}")
    _check_temperature(temperature)
    rate, quantization = int(fields.sample_rate), int(fields.quantization)
    n_samples = max(1, round(seconds * rate))
    model, dev = _model(state, device)
    condition = _condition(model, condition, fields.conditions)
    seed_signal = None
    if seed_audio is not None:
        seed_signal = mu_law_encode(_read_audio(seed_audio, rate), quantization)[None].to(dev)
    generator = torch.Generator(device=dev).manual_seed(int(seed))
    with num_threads(threads):
        start = time.perf_counter()
        classes = model.generate(n_samples, temperature=temperature, seed_signal=seed_signal, condition=condition,
                                 generator=generator)[0].cpu()
        elapsed = time.perf_counter() - start
    return GeneratedAudio(mu_law_decode(classes, quantization).numpy(), classes.numpy(), rate, temperature, int(seed),
                          0 if seed_signal is None else seed_signal.shape[-1], elapsed, state.model_name)


def _read_audio(path: PathLike, rate: int) -> np.ndarray:
    # soundfile and scipy: the optional "audio" extra, slow to import (docs/wavenet-notes.md):
    # imported only when audio is read or written.
    from cnnzoo.data.audio import read_audio

    try:
        return read_audio(path, rate)
    except Exception as error:  # libsndfile raises many kinds for a missing or bad file
        reason = getattr(error, "error_string", None) or str(error) or type(error).__name__
        raise UserError(f"cannot read the seed audio {str(path)!r}: {reason.strip()}") from None


def _write_audio(path: Path, signal: np.ndarray, rate: int) -> Path:
    from cnnzoo.data.audio import write_audio  # see _read_audio: the audio extra, imported when used

    return write_audio(path, signal, rate)


def plot_audio(signal: np.ndarray, rate: int, path: PathLike, title: str = "") -> Path:
    """Waveform above spectrogram, as PNG (atomically)."""
    fig = new_figure(9, 5)
    draw_audio(signal, rate, fig, title)
    fig.tight_layout()
    return save_figure(fig, path)


def draw_audio(signal: np.ndarray, rate: int, fig, title: str = "") -> None:
    """Waveform above spectrogram on ``fig``."""
    wave, spec = fig.subplots(2, 1, sharex=True)
    t = np.arange(len(signal)) / rate
    wave.plot(t, signal, lw=0.4)
    wave.set_ylabel("amplitude")
    wave.set_ylim(-1.05, 1.05)
    wave.grid(alpha=0.3)
    with np.errstate(divide="ignore"):  # a silent stretch (argmax often gives one) has log10(0) = -inf dB
        power, *_, image = spec.specgram(signal, NFFT=256, Fs=rate, noverlap=192, cmap="magma")
    top = 10 * np.log10(max(float(power.max()), 1e-20))
    image.set_clim(top - SPECTROGRAM_RANGE_DB, top)  # digital silence would otherwise wash out the colours
    spec.set_xlabel("seconds")
    spec.set_ylabel("Hz")
    if title:
        wave.set_title(title)


# ----------------------------------------------------------------------------------- series

QUANTILES = (0.1, 0.5, 0.9)  # the interval a sampled forecast gives: 80 %, around the median


@dataclass
class SeriesForecaster:
    """A continuous WaveNet with what its series went through (:class:`SeriesTransform`, then the
    standardisation ``mean``, ``std``): history in the CSV's units in, forecast in the CSV's units out.
    What :func:`forecast_series`, the backtest and the series task's end-of-training backtest share."""

    model: WaveNet
    transform: SeriesTransform
    mean: np.ndarray  # [C], the transformed series' units
    std: np.ndarray
    device: torch.device = torch.device("cpu")

    @property
    def receptive_field(self) -> int:
        return self.model.receptive_field

    def __call__(self, history: np.ndarray, horizon: int, *, samples: int = 0, temperature: float = 1.0,
                 seed: int = 0) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """(the point forecast ``[C, H]``: the predicted mean followed step by step, ``samples`` sample
        paths ``[N, C, H]`` at ``temperature``, or None) after ``history`` ``[C, T]``."""
        history = np.asarray(history, dtype=np.float64)
        if history.shape[-1] <= self.transform.lag:
            raise UserError(f"a forecast after {history.shape[-1]} steps: the {self.transform.name} transform "
                            f"needs more than {self.transform.lag}")
        # the last receptive field is all the network reads (and differencing needs lag more)
        changed = self.transform.apply(history[:, -(self.receptive_field + self.transform.lag):])
        standardised = (changed - self.mean[:, None]) / self.std[:, None]
        seen = torch.from_numpy(standardised[None].astype(np.float32)).to(self.device)
        seen, level = relevel(seen, self.transform.window_level, seen.shape[-1])
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        point = self._restore(self.model.forecast(seen, horizon, temperature=0.0) + level)
        paths = None
        if samples:
            drawn = self.model.forecast(seen.expand(samples, -1, -1), horizon, temperature=temperature,
                                        generator=generator)
            paths = self.transform.invert(self._restore(drawn + level), history)
        point = self.transform.invert(point[0], history)
        return point.astype(np.float32), None if paths is None else paths.astype(np.float32)

    def _restore(self, out: torch.Tensor) -> np.ndarray:
        """The network's units -> the transformed series' (before the transform is inverted)."""
        return out.double().cpu().numpy() * self.std[:, None] + self.mean[:, None]


@dataclass
class Forecast:
    """``values`` ``[C, H]`` in the CSV's units for ``steps`` (labels continuing the step column, or
    step numbers); ``history`` ``[C, T]`` the series the forecast continues, with ``history_steps``.
    With sample paths, ``quantiles`` ``[3, C, H]``: the 10th, 50th and 90th percentiles of ``samples``
    paths; ``backtest`` the errors on the history's end next to the baselines', when one was run."""

    columns: list[str]
    step_column: Optional[str]
    steps: list[str]
    values: np.ndarray
    history: np.ndarray
    history_steps: list[str]
    temperature: float
    source: str
    model_name: str = ""
    written: list = field(default_factory=list)
    transform: str = "none"
    samples: int = 0
    quantiles: Optional[np.ndarray] = None
    backtest: Optional[Backtest] = None
    series: str = ""  # which series of a global model's several ("" for a model of one)

    @property
    def horizon(self) -> int:
        return self.values.shape[1]

    def summary(self) -> str:
        """One line: what was forecast, after what."""
        what = f"series {self.series!r}" if self.series else ", ".join(self.columns)
        return (f"forecast of {what}: {self.horizon} steps after {self.history.shape[1]} of {self.source} "
                f"({self.step_column or 'step'} {self.steps[0]} to {self.steps[-1]})")

    def to_csv(self) -> str:
        """The forecast as CSV: the step column (its name, or ``step``), one column per series
        column and, with sample paths, ``<column>_p10``, ``_p50``, ``_p90`` beside each."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        names = list(self.columns)
        if self.quantiles is not None:
            names = [n for c in self.columns for n in (c, *(f"{c}_p{round(q * 100)}" for q in QUANTILES))]
        writer.writerow([self.step_column or "step", *names])
        for i, step in enumerate(self.steps):
            cells = []
            for c in range(len(self.columns)):
                cells.append(f"{self.values[c, i]:.6g}")
                if self.quantiles is not None:
                    cells.extend(f"{self.quantiles[q, c, i]:.6g}" for q in range(len(QUANTILES)))
            writer.writerow([step, *cells])
        return buffer.getvalue()

    def save(self, path: PathLike, plot: bool = True) -> list[Path]:
        """``path`` (CSV, atomically) and, with ``plot``, history and forecast as a PNG beside it;
        with a backtest, its table beside them (``<name>.backtest.csv`` and ``.json``)."""
        path = Path(path)
        atomic_write_text(path, self.to_csv())
        written = [path]
        if plot:
            written.append(plot_forecast(self, path.with_suffix(".png")))
        if self.backtest is not None:
            written.extend(self.backtest.save(path.with_suffix(".backtest.csv")))
        return written

    def _repr_html_(self) -> str:
        """In a notebook: the key facts, the forecast as a table, the backtest's table and the plot."""
        facts = {"columns": ", ".join(self.columns), "steps": f"{self.steps[0]} to {self.steps[-1]}",
                 "history": f"{self.history.shape[1]} steps of {self.source}", "transform": self.transform,
                 "intervals": f"10th-90th percentile of {self.samples} paths" if self.quantiles is not None else "none"}
        rows = list(csv.reader(io.StringIO(self.to_csv())))
        tables = [html_table(rows[1:], rows[0], align="l" + "r" * (len(rows[0]) - 1), caption="forecast")]
        if self.backtest is not None:
            tables.append(self.backtest._repr_html_())
        fig = new_figure(9, 3.2 * len(self.columns))
        draw_forecast(self, fig)
        fig.tight_layout()
        return report_html(f"{self.model_name}: {self.horizon}-step forecast", facts, tables=tables, figures=[fig])

    def __repr__(self) -> str:
        band = f", 80 % intervals from {self.samples} paths" if self.quantiles is not None else ""
        what = f"{self.series!r} " if self.series else ""
        return (f"Forecast({what}{', '.join(self.columns)}: {self.horizon} steps {self.steps[0]} to "
                f"{self.steps[-1]}, transform {self.transform}{band})")


@dataclass
class PanelForecast:
    """A global model's forecasts, one :class:`Forecast` per series (``forecasts``, each with its
    ``series`` name), and with ``backtest`` their backtests and the mean MASE over them."""

    forecasts: list[Forecast]
    backtest: Optional[PanelBacktest] = None

    @property
    def names(self) -> list[str]:
        return [f.series for f in self.forecasts]

    def __getitem__(self, name: str) -> Forecast:
        """The forecast of series ``name``."""
        for forecast in self.forecasts:
            if forecast.series == name:
                return forecast
        raise KeyError(f"no series {name!r}; the forecast holds {', '.join(self.names)}")

    @property
    def temperature(self) -> float:
        return self.forecasts[0].temperature

    @property
    def samples(self) -> int:
        return self.forecasts[0].samples

    def summary(self) -> str:
        first = self.forecasts[0]
        return (f"forecast of {len(self.forecasts)} series ({', '.join(self.names)}) of {first.source}: "
                f"{first.horizon} steps each ({first.step_column or 'step'} {first.steps[0]} to {first.steps[-1]} "
                f"for {first.series!r})")

    def to_csv(self) -> str:
        """One table: a ``series`` column, then each series' forecast as :meth:`Forecast.to_csv` writes it."""
        header = ""
        lines = []
        for forecast in self.forecasts:
            rows = forecast.to_csv().splitlines()
            header = header or rows[0]
            series = io.StringIO()
            csv.writer(series, lineterminator="").writerow([forecast.series])
            lines += [f"{series.getvalue()},{row}" for row in rows[1:]]
        return "\n".join([f"series,{header}", *lines]) + "\n"

    def save(self, path: PathLike, plot: bool = True) -> list[Path]:
        """``path`` (CSV with a series column, atomically), with ``plot`` a PNG beside it with a panel
        per series, and with a backtest its tables (``<name>.backtest.csv`` and ``.json``)."""
        path = Path(path)
        atomic_write_text(path, self.to_csv())
        written = [path]
        if plot:
            fig = new_figure(9, 2.8 * len(self.forecasts))
            self.draw(fig)
            fig.tight_layout()
            written.append(save_figure(fig, path.with_suffix(".png")))
        if self.backtest is not None:
            written.extend(self.backtest.save(path.with_suffix(".backtest.csv")))
        return written

    def draw(self, fig) -> None:
        """History and forecast of every series on ``fig``, a panel each."""
        axes = fig.subplots(len(self.forecasts), 1, squeeze=False)
        for ax, forecast in zip(axes[:, 0], self.forecasts):
            _draw_column(forecast, ax, 0)
        axes[0, 0].set_title(_title(self.forecasts[0]))

    def _repr_html_(self) -> str:
        """In a notebook: the facts, the forecasts as one table, the backtest and a panel per series."""
        first = self.forecasts[0]
        facts = {"series": ", ".join(self.names), "steps": f"{first.horizon} per series",
                 "history": first.source, "transform": first.transform,
                 "intervals": f"10th-90th percentile of {first.samples} paths" if first.quantiles is not None
                 else "none"}
        rows = list(csv.reader(io.StringIO(self.to_csv())))
        tables = [html_table(rows[1:], rows[0], align="ll" + "r" * (len(rows[0]) - 2), caption="forecast")]
        if self.backtest is not None:
            tables.append(self.backtest._repr_html_())
        fig = new_figure(9, 2.8 * len(self.forecasts))
        self.draw(fig)
        fig.tight_layout()
        return report_html(f"{first.model_name}: {first.horizon}-step forecasts of {len(self.forecasts)} series",
                           facts, tables=tables, figures=[fig])

    def __repr__(self) -> str:
        first = self.forecasts[0]
        return (f"PanelForecast({len(self.forecasts)} series: {', '.join(self.names)}; {first.horizon} steps each, "
                f"transform {first.transform})")


def forecaster_of(state: Checkpoint, fields: SeriesFields, device: str = "auto",
                  member: Optional[SeriesMember] = None) -> SeriesForecaster:
    """The checkpoint's WaveNet with the transform and standardisation its series went through
    (``member``'s, for one series of a global model)."""
    model, dev = _model(state, device)
    model.eval()
    transform = parse_transform(fields.transform, fields.season)
    mean, std = (fields.mean, fields.std) if member is None else ((member.mean,), (member.std,))
    return SeriesForecaster(model, transform, np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64),
                            dev)


def forecast_series(checkpoint: Union[PathLike, Checkpoint], data: Optional[PathLike] = None, *, horizon: int,
                    temperature: float = 0.0, seed: int = 0, condition: Union[int, str, None] = None,
                    samples: int = 0, backtest: int = 0, season: Optional[int] = None, series: Optional[str] = None,
                    device: str = "auto", threads: Optional[int] = GENERATION_THREADS
                    ) -> Union[Forecast, PanelForecast]:
    """``horizon`` steps after the series in ``data`` (a CSV with the columns the model was trained
    on; default: the end of the training CSV, kept in the checkpoint), in the CSV's units.

    A global model of several series (trained with ``--id-column`` or ``--wide``) gives a
    :class:`PanelForecast`: every series it learned that ``data`` holds (or its tail in the
    checkpoint), each with its own standardisation, or only ``series`` (a name); a model of one
    series gives a :class:`Forecast`.

    ``samples``: draw that many sample paths (at ``temperature``, 1 when it is 0) for the 10th, 50th
    and 90th percentiles. ``backtest``: forecast the last ``backtest`` horizons of the history from
    rolling origins and score them next to the naive, seasonal-naive and ETS baselines (needs
    ``data``: the kept tail is one receptive field). ``season``: the period for the seasonal baseline
    and MASE (default: the one the model was trained with)."""
    state, fields = sequence_checkpoint(checkpoint, SeriesFields, "forecast")
    if not isinstance(horizon, int) or horizon < 1:
        raise UserError(f"--horizon must be a whole number of steps, at least 1; got {horizon}")
    _check_temperature(temperature)
    if samples < 0 or backtest < 0:
        raise UserError(f"--samples and --backtest take 0 or more, got {samples} and {backtest}")
    if fields.members:
        return _forecast_panel(state, fields, data, series, horizon=horizon, temperature=temperature, seed=seed,
                               condition=condition, samples=samples, backtest=backtest, season=season,
                               device=device, threads=threads)
    if series is not None:
        raise UserError(f"--series {series!r}: this model learned one series; --series picks one of a global "
                        f"model's (trained with --id-column or --wide)")
    columns, step_column = list(fields.columns), fields.step_column
    if data is not None:
        read = read_series_csv(data, columns, step_column=step_column)
        history, history_steps, source = read.values, read.steps, str(data)
    else:  # the end of the training CSV, as the checkpoint keeps it
        if backtest:
            raise UserError("--backtest needs --data: the checkpoint keeps only the series' last receptive field")
        history = np.asarray(fields.tail, dtype=np.float32)
        last = list(fields.last_steps) if fields.last_steps else None
        history_steps = _steps_before(last, history.shape[1]) if last else None
        source = "the end of the training series"
    forecaster = forecaster_of(state, fields, device)
    _condition(forecaster.model, condition)  # a series WaveNet is never conditioned: refuses a --condition
    with num_threads(threads):
        values, paths, steps, history_steps = _one_forecast(
            forecaster, history, history_steps, horizon, temperature, samples, seed,
            fields.length if data is None else history.shape[1])
        scores = None
        if backtest:
            scores = run_backtest(history, forecaster, horizon=horizon, origins=backtest,
                                  season=season or fields.season, samples=samples, columns=columns,
                                  temperature=temperature or 1.0, seed=seed, source=source)
    quantiles = None if paths is None else np.quantile(paths, QUANTILES, axis=0).astype(np.float32)
    return Forecast(columns, step_column, steps, values, history, history_steps, temperature, source,
                    state.model_name, transform=fields.transform, samples=samples, quantiles=quantiles,
                    backtest=scores)


def _forecast_panel(state: Checkpoint, fields: SeriesFields, data: Optional[PathLike], name: Optional[str], *,
                    horizon: int, temperature: float, seed: int, condition: Union[int, str, None], samples: int,
                    backtest: int, season: Optional[int], device: str, threads: Optional[int]) -> PanelForecast:
    """:func:`forecast_series` for a global model: each chosen series with its member's standardisation."""
    members = {m.name: m for m in fields.members}
    if name is not None and name not in members:
        raise UserError(f"--series {name!r} is not one the model learned; choose one of {', '.join(members)}")
    read: dict[str, Series] = {}
    if data is not None:
        long = fields.id_column is not None
        found = read_panel_csv(data, id_column=fields.id_column, value_column=fields.columns[0] if long else None,
                               columns=None if long else [m for m in members if name in (None, m)],
                               step_column=fields.step_column)
        unknown = [s.name for s in found if s.name not in members]
        if unknown and name is None:
            raise UserError(f"{data}: series {', '.join(map(repr, unknown))} were not learned by this model (it "
                            f"learned {', '.join(members)}): its standardisation is per series; pick one with "
                            f"--series or retrain with them")
        read = {s.name: s for s in found if s.name in members}
        if name is not None and name not in read:
            raise UserError(f"{data} holds no series {name!r}")
    elif backtest:
        raise UserError("--backtest needs --data: the checkpoint keeps only each series' last receptive field")
    chosen = [members[name]] if name is not None else [members[n] for n in (read or members)]
    value_name = fields.columns[0] if fields.id_column is not None else "value"
    model, dev = _model(state, device)
    model.eval()
    _condition(model, condition)
    transform = parse_transform(fields.transform, fields.season)
    forecasts, scores = [], []
    for member in chosen:
        forecaster = SeriesForecaster(model, transform, np.array([member.mean]), np.array([member.std]), dev)
        if member.name in read:
            found_series = read[member.name]
            history, history_steps = found_series.values, found_series.steps
            source = str(data)
            reads = forecaster.receptive_field + transform.lag
            need = max(reads, (season or fields.season) + 1) + backtest * horizon if backtest else reads
            if history.shape[1] < need:
                raise UserError(f"{found_series.where} has {history.shape[1]} steps: the model reads {reads} "
                                f"(its receptive field of {forecaster.receptive_field} and {transform.lag} the "
                                f"{transform.name} transform consumes)"
                                + (f"; a backtest of {backtest} x {horizon} steps needs {need}" if backtest else ""))
        else:
            history = np.asarray([member.tail], dtype=np.float32)
            last = list(member.last_steps) if member.last_steps else None
            history_steps = _steps_before(last, history.shape[1]) if last else None
            source = "the end of the training series"
        with num_threads(threads):
            forecast = _one_forecast(forecaster, history, history_steps, horizon, temperature, samples, seed,
                                     member.length if member.name not in read else history.shape[1])
            if backtest:
                scores.append(run_backtest(history, forecaster, horizon=horizon, origins=backtest,
                                           season=season or fields.season, samples=samples, columns=[member.name],
                                           temperature=temperature or 1.0, seed=seed, source=str(data)))
        values, paths, steps, history_steps = forecast
        quantiles = None if paths is None else np.quantile(paths, QUANTILES, axis=0).astype(np.float32)
        forecasts.append(Forecast([value_name], fields.step_column, steps, values, history, history_steps,
                                  temperature, source, state.model_name, transform=fields.transform, samples=samples,
                                  quantiles=quantiles, backtest=scores[-1] if backtest else None, series=member.name))
    return PanelForecast(forecasts, PanelBacktest(tuple(scores)) if scores else None)


def _one_forecast(forecaster: SeriesForecaster, history: np.ndarray, history_steps: Optional[Sequence[str]],
                  horizon: int, temperature: float, samples: int, seed: int, length: int):
    """(point ``[C, H]``, sample paths or None, the forecast's step labels, the history's) after ``history``."""
    one_path = bool(temperature) and not samples  # --temperature alone: one sample path is the forecast
    values, paths = forecaster(history, horizon, samples=1 if one_path else samples,
                               temperature=temperature or 1.0, seed=seed)
    if one_path and paths is not None:
        values, paths = paths[0], None
    if history_steps is not None:
        steps = continue_steps(history_steps, horizon)
    else:
        steps = [str(i) for i in range(length, length + horizon)]
        history_steps = [str(i) for i in range(length - history.shape[1], length)]
    return values, paths, steps, list(history_steps)


def _steps_before(last: list[str], count: int) -> list[str]:
    """Labels for the ``count`` steps ending with ``last`` (the kept tail has only its last few):
    unknown ones are left empty, which the plot and the continuation both tolerate."""
    return [""] * (count - len(last)) + list(last[-count:])


def plot_forecast(forecast: Forecast, path: PathLike) -> Path:
    """The end of the history and the forecast after it, one panel per column, as PNG (atomically)."""
    fig = new_figure(9, 3.2 * len(forecast.columns))
    draw_forecast(forecast, fig)
    fig.tight_layout()
    return save_figure(fig, path)


def draw_forecast(forecast: Forecast, fig) -> None:
    """History and forecast (with its 10th-90th percentile band when sampled) on ``fig``, a panel per column."""
    axes = fig.subplots(len(forecast.columns), 1, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        _draw_column(forecast, ax, i, x_label=i == len(forecast.columns) - 1)
    axes[0, 0].set_title(_title(forecast))


def _title(forecast: Forecast) -> str:
    how = ("mean" if forecast.temperature == 0 or forecast.samples
           else f"one sample path, temperature {forecast.temperature:g}")
    return f"{forecast.model_name}: {forecast.horizon}-step forecast ({how}; transform {forecast.transform})"


def _draw_column(forecast: Forecast, ax, i: int, x_label: bool = True) -> None:
    """Column ``i``'s history and forecast (and its band) on ``ax``, labelled by its series or column."""
    shown = min(forecast.history.shape[1], max(100, HISTORY_SHOWN * forecast.horizon))
    x_history, x_forecast, labels = _axis(forecast.history_steps[-shown:], forecast.steps)
    history = forecast.history[i, -shown:]
    ax.plot(x_history, history, lw=1, label="history")
    if forecast.quantiles is not None:
        low, _, high = forecast.quantiles[:, i]
        ax.fill_between([x_history[-1], *x_forecast], [history[-1], *low], [history[-1], *high], alpha=0.25,
                        color="C1", lw=0, label=f"10th-90th percentile ({forecast.samples} paths)")
    ax.plot([x_history[-1], *x_forecast], [history[-1], *forecast.values[i]], lw=1.5, label="forecast")
    ax.axvline(x_history[-1], color="grey", lw=0.6, ls=":")
    ax.set_ylabel(forecast.series or forecast.columns[i])
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    if x_label:
        ax.set_xlabel(forecast.step_column or "step")
    if labels is not None:
        ticks = np.linspace(0, len(labels) - 1, min(8, len(labels))).round().astype(int)
        ax.set_xticks(ticks, [labels[t] for t in ticks], rotation=30, ha="right")


def _axis(history_steps: list[str], steps: list[str]):
    """x positions for history and forecast: the steps themselves when they are numbers (years),
    else positions with the labels as ticks."""
    try:
        x = [float(s) for s in history_steps + steps]
        return x[:len(history_steps)], x[len(history_steps):], None
    except ValueError:
        x = list(range(len(history_steps) + len(steps)))
        return x[:len(history_steps)], x[len(history_steps):], history_steps + steps

