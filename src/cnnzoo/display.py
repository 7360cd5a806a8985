"""How cnnzoo's objects show themselves where learners work: a Jupyter cell, a terminal, a log file.

Jupyter asks an object for ``_repr_html_`` / ``_repr_png_`` on its own, so the objects only need to
return HTML or PNG bytes; this module builds those (an escaped table, a figure as an inline
``<img>``, an audio player) and never imports IPython at module level: IPython is not one of
cnnzoo's dependencies. The two things that must talk to the notebook itself -- a progress bar drawn
as a widget and :class:`LiveCurves`, a figure redrawn in place each epoch -- import it inside, and
only when :func:`in_notebook` says a kernel is running.

Progress follows one rule everywhere (:func:`progress_bar`): a widget (or text) bar in a notebook,
the terminal bar on a TTY, nothing in a redirected log -- its per-epoch lines say what matters
there, where each bar refresh would be one more line -- and nothing at all with ``progress=False``.
"""
from __future__ import annotations

import base64
import html
import importlib.util
import io
import sys
import wave
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from tqdm.std import tqdm as text_bar

METRIC_LABELS = {"acc": "accuracy", "mae": "mean absolute error", "loss": "loss"}


# ----------------------------------------------------------------------------- where we run

def in_notebook() -> bool:
    """True inside a Jupyter kernel (notebook, lab, nbclient), False in a terminal REPL or a script.

    Asked of the modules already loaded, never by importing IPython: a kernel has imported
    ``ipykernel``; a terminal IPython shell has IPython but no ``IPKernelApp`` in its config.
    """
    if "ipykernel" not in sys.modules or "IPython" not in sys.modules:
        return False
    get_ipython = getattr(sys.modules["IPython"], "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def bars_wanted(progress: bool) -> bool:
    """Whether ``progress`` asks for bars and there is somewhere to draw them (a notebook or a TTY)."""
    isatty = getattr(sys.stderr, "isatty", None)  # a replaced stderr may not have one
    return bool(progress) and (in_notebook() or bool(isatty and isatty()))


def progress_bar(total: Optional[int], *, desc: str = "", unit: str = "it", progress: bool = True,
                 leave: bool = False, **options: Any):
    """A tqdm bar for ``total`` steps, or None where none should be drawn (see the module's rule).

    In a notebook: tqdm's widget when ipywidgets is installed, else its text bar (Jupyter redraws
    a carriage-return line in place). Callers treat None as "print plain lines instead".
    """
    if not bars_wanted(progress):
        return None
    if in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as widget_bar  # imports IPython: only reached inside a kernel

        return widget_bar(total=total, desc=desc, unit=unit, leave=leave, **options)
    return text_bar(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True, **options)


def steps_bar(total: Optional[int], *, desc: str = "", unit: str = "it", progress: bool = True, **options: Any):
    """:func:`progress_bar`, or a disabled tqdm where none should be drawn: for loops that call
    ``update``/``close`` either way (data preparation, downloads)."""
    bar = progress_bar(total, desc=desc, unit=unit, progress=progress, **options)
    return bar if bar is not None else text_bar(total=total, disable=True)


# ----------------------------------------------------------------------------- HTML pieces

def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def html_table(rows: Iterable[Sequence[Any]], headers: Optional[Sequence[str]] = None, *, align: str = "",
               caption: str = "", footer: Iterable[Sequence[Any]] = ()) -> str:
    """An HTML table of ``rows`` (every cell escaped). ``align``: one letter per column, ``l`` or
    ``r`` (numbers read best right-aligned); ``footer`` rows go in ``<tfoot>`` (totals)."""
    def cells(row, tag):
        out = []
        for i, value in enumerate(row):
            side = "right" if i < len(align) and align[i] == "r" else "left"
            out.append(f'<{tag} style="text-align:{side}">{escape(value)}</{tag}>')
        return "<tr>" + "".join(out) + "</tr>"

    parts = ['<table class="cnnzoo">']
    if caption:
        parts.append(f"<caption>{escape(caption)}</caption>")
    if headers:
        parts.append("<thead>" + cells(headers, "th") + "</thead>")
    parts.append("<tbody>" + "".join(cells(r, "td") for r in rows) + "</tbody>")
    footer = list(footer)
    if footer:
        parts.append("<tfoot>" + "".join(cells(r, "td") for r in footer) + "</tfoot>")
    parts.append("</table>")
    return "".join(parts)


def facts_html(facts: dict[str, Any], title: str = "") -> str:
    """A titled two-column list of key figures (name, value): the head of a result's display."""
    heading = f"<h4>{escape(title)}</h4>" if title else ""
    return heading + html_table(list(facts.items()), align="ll")


def report_html(title: str, facts: dict[str, Any], *, tables: Sequence[str] = (), figures: Sequence[Any] = ()) -> str:
    """A result's whole display: its key figures, then HTML tables (from :func:`html_table`), then
    figures (matplotlib figures or PNG bytes) inline."""
    images = [png_html(f if isinstance(f, bytes) else figure_png(f)) for f in figures]
    return "<div>" + facts_html(facts, title) + "".join(tables) + "".join(images) + "</div>"


def figure_png(fig, dpi: int = 100) -> bytes:
    """A matplotlib figure's PNG bytes. The figure is made with ``matplotlib.figure.Figure`` (see
    :func:`new_figure`), so no pyplot state or backend is touched and nothing is left open."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def new_figure(width: float, height: float):
    """A matplotlib figure outside pyplot: drawing it never switches a notebook's backend."""
    from matplotlib.figure import Figure  # measured import cost: paid only by what draws

    return Figure(figsize=(width, height))


def png_html(png: bytes, alt: str = "") -> str:
    """PNG bytes as an inline ``<img>`` (base64): a notebook, an HTML export and a report all show it."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}"/>'


def wav_bytes(signal: np.ndarray, sample_rate: int) -> bytes:
    """A mono float signal in [-1, 1] as 16-bit PCM WAV bytes."""
    pcm = (np.clip(np.asarray(signal, dtype=np.float64).reshape(-1), -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def audio_html(signal: np.ndarray, sample_rate: int) -> str:
    """An ``<audio>`` player holding the signal as a base64 WAV."""
    data = base64.b64encode(wav_bytes(signal, sample_rate)).decode("ascii")
    return f'<audio controls src="data:audio/wav;base64,{data}"></audio>'


# ----------------------------------------------------------------------------- curves

def curves_figure(history: Sequence[Any], metrics: Sequence[str] = ("loss", "acc"), title: str = "",
                  limits: Optional[dict[str, tuple[float, float]]] = None):
    """Each metric per epoch, train and validation side by side, from history records (anything with
    ``epoch``, ``train`` and ``val``: metric name -> value, as ``EpochRecord``)."""
    limits = limits or {}
    fig = new_figure(4.5 * len(metrics), 3.4)
    epochs = [r.epoch for r in history]
    for i, key in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        label = METRIC_LABELS.get(key, key)
        for split in ("train", "val"):
            values = [(getattr(r, split) or {}).get(key, np.nan) for r in history]
            ax.plot(epochs, values, "o-", label=f"{'validation' if split == 'val' else split} {label}")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs, not 0.96 ... 1.04
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
        if key in limits:
            ax.set_ylim(*limits[key])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


class LiveOutput:
    """One output area of a notebook cell that is replaced in place: ``show(html)`` or ``show(png=...)``
    draws the first time and redraws after. A no-op outside a kernel (``enabled``)."""

    def __init__(self, enabled: Optional[bool] = None):
        self.enabled = in_notebook() if enabled is None else enabled
        self._handle = None

    def show(self, html: Optional[str] = None, *, png: Optional[bytes] = None) -> None:
        if not self.enabled:
            return
        from IPython.display import HTML, Image, display  # only inside a kernel: enabled says so

        shown = Image(data=png) if png is not None else HTML(html)
        if self._handle is None:
            self._handle = display(shown, display_id=True)
        else:
            self._handle.update(shown)


class LiveCurves:
    """An ``on_epoch_end`` callback that redraws one figure of the curves in its notebook cell.

    ``cnnzoo.train(..., on_epoch_end=LiveCurves())``: after each epoch the figure of loss and
    accuracy (train and validation) so far replaces the previous one in place (IPython's display
    handle, as fastai's graph callback does). Outside a kernel it does nothing, so a trainer can
    always attach one.
    """

    def __init__(self, metrics: Sequence[str] = ("loss", "acc"), title: str = "",
                 limits: Optional[dict[str, tuple[float, float]]] = None, enabled: Optional[bool] = None):
        self.metrics, self.title, self.limits = tuple(metrics), title, limits
        self.output = LiveOutput(enabled)
        self.history: list[Any] = []

    @property
    def enabled(self) -> bool:
        return self.output.enabled

    def restart(self, title: str) -> None:
        """Draw a new run's curves from its first epoch in the same place (compare: one model after another)."""
        self.title, self.history = title, []

    def __call__(self, record: Any) -> None:
        if not self.enabled:
            return
        self.history.append(record)
        self.output.show(png=figure_png(curves_figure(self.history, self.metrics, self.title, self.limits)))
