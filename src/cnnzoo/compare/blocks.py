"""The report as a list of typed blocks, and its two renderings: Markdown and self-contained HTML.

:mod:`cnnzoo.compare.report` says what the report holds, once, as blocks (a heading, a paragraph, a
table, a plot...); :func:`to_markdown` and :func:`to_html` each turn every kind of block into text in
one place, so ``report.md`` and ``report.html`` cannot drift apart. Cells and text are plain strings:
each renderer escapes them for its format.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Union

from cnnzoo.compare.record import Misclassified
from cnnzoo.text import table


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2  # 1: the title; 2: a section; 3: a part of one


@dataclass(frozen=True)
class Paragraph:
    text: str
    bold_marks: bool = False  # **text** is bold (the setting line); off elsewhere, where ** is literal


@dataclass(frozen=True)
class Note:
    """A paragraph that explains a rule or a unit (italic in Markdown, grey in HTML)."""

    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]
    style: str = ""  # an HTML class ("verdict")


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: str                            # "l" (text) or "r" (numbers) per column
    code_columns: tuple[int, ...] = ()    # columns of model specs, set as code (what one types)
    row_styles: tuple[str, ...] = ()      # HTML classes per row ("done front", "failed")
    styles_note: str = ""                 # what the row styles mean (said where they are shown: HTML)


@dataclass(frozen=True)
class Matrix:
    """A confusion matrix: rows are true classes, columns predicted ones."""

    class_names: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Plot:
    stem: str     # plots/<stem>.png beside report.md
    title: str
    png: bytes    # inline in report.html
    wide: bool = True


@dataclass(frozen=True)
class PlotRow:
    """Plots side by side (in HTML; one after another in Markdown)."""

    plots: tuple[Plot, ...]


@dataclass(frozen=True)
class Gallery:
    """Validation images a model got wrong: thumbnails in HTML, a table in Markdown."""

    mistakes: tuple[Misclassified, ...]


@dataclass(frozen=True)
class Details:
    """Preformatted text a reader opens when needed (a traceback, a printed table)."""

    text: str


Block = Union[Heading, Paragraph, Note, Bullets, Table, Matrix, Plot, PlotRow, Gallery, Details]


# ---- Markdown ----------------------------------------------------------------------------------

def to_markdown(blocks: list[Block]) -> str:
    """The blocks as one Markdown document, a blank line between blocks."""
    return "\n\n".join(_markdown(block) for block in blocks).rstrip() + "\n"


def _markdown(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Note):
        return f"_{block.text}_"
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Table):
        rows = [[f"`{c}`" if i in block.code_columns else c for i, c in enumerate(row)] for row in block.rows]
        return table(rows, block.headers, block.align, markdown=True)
    if isinstance(block, Matrix):
        names = block.class_names
        rows = [[name] + [str(c) for c in row] for name, row in zip(names, block.counts)]
        return table(rows, ["true \\ predicted", *names], "l" + "r" * len(names), markdown=True)
    if isinstance(block, Plot):
        return f"![{block.title}](plots/{block.stem}.png)"
    if isinstance(block, PlotRow):
        return "\n\n".join(_markdown(plot) for plot in block.plots)
    if isinstance(block, Gallery):
        rows = [[str(m.index), m.true_class, m.predicted_class, f"{100 * m.confidence:.0f} %"]
                for m in block.mistakes]
        return (table(rows, ["val image", "true", "predicted", "confidence"], "rllr", markdown=True)
                + "\n\n_Thumbnails in report.html._")
    if isinstance(block, Details):
        return f"```\n{block.text}\n```"
    raise TypeError(f"not a report block: {block!r}")


# ---- HTML --------------------------------------------------------------------------------------

# The one stylesheet: one family for all text - DejaVu Sans first, the face matplotlib draws the
# plots' labels in, so the figures and the page read alike - and one smaller size for every
# secondary block (tables, notes, captions, code, details), so no block sets its own. Only <pre>
# (tracebacks, printed tables) is monospaced: its columns line up by character.
CSS = """
:root { --text: "DejaVu Sans", Verdana, system-ui, sans-serif;
        --mono: "DejaVu Sans Mono", Menlo, Consolas, monospace; --small: 0.875rem; }
html { font-size: 16px; }
body { font-family: var(--text); font-size: 1rem; line-height: 1.45; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.25rem; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1rem; }
table, .note, figcaption, pre, summary, code { font-size: var(--small); }
code, table, figcaption, summary { font-family: inherit; }
code { background: #f3f3f3; padding: 0 0.2em; border-radius: 2px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; font-weight: 600; } td.text, th.text { text-align: left; }
tr.failed td, tr.interrupted td { background: #fdecea; }
tr.front td:first-child { font-weight: bold; }
.verdict li { margin: 0.3em 0; } .note { color: #555; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0 0 1em 0; }
.plots img { max-width: 520px; width: 100%; border: 1px solid #eee; }
img.wide { max-width: 760px; width: 100%; border: 1px solid #eee; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8em; }
.gallery figure { width: 112px; text-align: center; }
.gallery img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated;
               border: 1px solid #ccc; background: #fafafa; }
.gallery figcaption span { display: block; } .gallery .wrong { color: #b00020; } .gallery .index { color: #888; }
pre { font-family: var(--mono); background: #f7f7f7; padding: 0.6em; overflow-x: auto; }
"""


def to_html(blocks: list[Block], title: str) -> str:
    """The blocks as one HTML file with everything inline: CSS in <style>, plots and thumbnails as
    base64 PNG data URIs, no scripts."""
    head = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>"]
    body = [line for block in blocks for line in _html(block)]
    return "\n".join(head + body + ["</body>", "</html>"]) + "\n"


def _html(block: Block) -> list[str]:
    esc = html.escape
    if isinstance(block, Heading):
        return [f"<h{block.level}>{esc(block.text)}</h{block.level}>"]
    if isinstance(block, Paragraph):
        return [f"<p>{_bold(_code(esc(block.text))) if block.bold_marks else _code(esc(block.text))}</p>"]
    if isinstance(block, Note):
        return [f'<p class="note">{_code(esc(block.text))}</p>']
    if isinstance(block, Bullets):
        return [f'<ul class="{block.style}">' if block.style else "<ul>",
                *(f"<li>{esc(item)}</li>" for item in block.items), "</ul>"]
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Matrix):
        return _html_matrix(block)
    if isinstance(block, Plot):
        data = base64.b64encode(block.png).decode("ascii")
        attr = ' class="wide"' if block.wide else ""
        return [f'<figure><img{attr} alt="{esc(block.title)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(block.title)}</figcaption></figure>"]
    if isinstance(block, PlotRow):
        return ['<div class="plots">', *(line for plot in block.plots for line in _html(plot)), "</div>"]
    if isinstance(block, Gallery):
        return ['<div class="gallery">', *(_html_thumbnail(m) for m in block.mistakes), "</div>"]
    if isinstance(block, Details):
        return [f"<details><summary>details</summary><pre>{esc(block.text)}</pre></details>"]
    raise TypeError(f"not a report block: {block!r}")


def _html_matrix(block: Matrix) -> list[str]:
    esc = html.escape
    out = ['<div class="table-wrap">', "<table>",
           '<tr><th class="text">true \\ predicted</th>' + "".join(f"<th>{esc(n)}</th>" for n in block.class_names)
           + "</tr>"]
    for name, row in zip(block.class_names, block.counts):
        total = max(sum(row), 1)
        cells = "".join(f'<td style="background: rgba(31, 119, 180, {0.75 * c / total:.2f})">{c}</td>' for c in row)
        out.append(f'<tr><td class="text">{esc(name)}</td>{cells}</tr>')
    return out + ["</table>", "</div>"]


def _html_thumbnail(m: Misclassified) -> str:
    esc = html.escape
    return (f'<figure><img alt="validation image {m.index}" src="data:image/png;base64,{m.thumbnail_png}">'
            f"<figcaption><span>{esc(m.true_class)}</span>"
            f'<span class="wrong">as {esc(m.predicted_class)} ({100 * m.confidence:.0f} %)</span>'
            f'<span class="index">val #{m.index}</span></figcaption></figure>')


def _html_table(block: Table) -> list[str]:
    esc = html.escape
    align = block.align.ljust(len(block.headers), "l")
    cls = [' class="text"' if a == "l" else "" for a in align]

    def cell(i: int, value: str) -> str:
        return f"<code>{esc(value)}</code>" if i in block.code_columns else esc(value)

    out = ['<div class="table-wrap">', "<table>",
           "<tr>" + "".join(f"<th{c}>{esc(h)}</th>" for h, c in zip(block.headers, cls)) + "</tr>"]
    styles = block.row_styles or ("",) * len(block.rows)
    for row, style in zip(block.rows, styles):
        cells = "".join(f"<td{c}>{cell(i, v)}</td>" for i, (v, c) in enumerate(zip(row, cls)))
        out.append(f'<tr class="{style}">{cells}</tr>' if style else f"<tr>{cells}</tr>")
    out += ["</table>", "</div>"]
    return out + ([f'<p class="note">{esc(block.styles_note)}</p>'] if block.styles_note else [])


def _code(text: str) -> str:
    """`a command` in running text as code, as Markdown shows it (an unpaired backtick stays)."""
    pieces = text.split("`")
    if len(pieces) % 2 == 0:
        return text
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _bold(text: str) -> str:
    """The one bit of Markdown a paragraph may use: **bold**."""
    pieces = text.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(pieces))
