"""The comparison report: ``report.md``, a self-contained ``report.html``, ``results.json``/``.csv``, plots.

Every artefact is written atomically, and all of them are rewritten after each model, so whatever
stops the run (Ctrl-C, a crash, a killed machine) leaves a complete report of what finished.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Callable

from cnnzoo.compare.analysis import TRADE_OFF_RULE, pareto_front, verdict
from cnnzoo.compare.plots import PLOTS, render_plots
from cnnzoo.compare.results import csv_text, write_results_json
from cnnzoo.files import atomic_write_bytes, atomic_write_text
from cnnzoo.text import MISSING, format_count, format_percent, table

UNITS_NOTE = (
    "MACs = multiply-adds per image at the training image size (FLOPs = 2 x MACs). "
    "Weights MB = parameters + buffers stored as fp32, in 10^6 bytes. "
    "Latency = median over repeats, model in eval mode, on the training device; "
    "batch 1 and the training batch size, both given per image. "
    "Accuracies are on the validation split, which is the same for every model."
)


def _num(fmt: str) -> Callable:
    return lambda v: MISSING if v is None else format(v, fmt)


# The results table as data: (header, record key, formatter). report.md, report.html and the
# table printed at the end all come from this one list.
COLUMNS: tuple[tuple[str, str, Callable], ...] = (
    ("model", "name", str),
    ("status", "status", str),
    ("params", "params", format_count),
    ("MACs", "macs", format_count),
    ("weights MB", "weights_mb", _num(".2f")),
    ("epochs", "epochs_run", _num("d")),
    ("train s", "train_time_s", _num(".1f")),
    ("s/epoch", "time_per_epoch_s", _num(".2f")),
    ("train img/s", "train_images_per_s", _num(".0f")),
    ("ms/img @1", "latency_b1_ms", _num(".2f")),
    ("ms/img @batch", "latency_batch_ms_per_image", _num(".3f")),
    ("best acc %", "best_val_acc", format_percent),
    ("final acc %", "final_val_acc", format_percent),
    ("best epoch", "best_epoch", _num("d")),
)
ALIGN = "ll" + "r" * (len(COLUMNS) - 2)  # name and status are text; the rest are numbers


def table_rows(records: list[dict]) -> list[list[str]]:
    """The results table as strings, header first."""
    rows = [[header for header, _, _ in COLUMNS]]
    for r in records:
        rows.append([fmt(r.get(key)) if r.get(key) is not None else MISSING for _, key, fmt in COLUMNS])
    return rows


def markdown_table(records: list[dict]) -> str:
    """A pipe table, padded so it also reads well as plain text in a terminal."""
    header, *body = table_rows(records)
    return table(body, header, ALIGN, markdown=True)


def write_report(out_dir: Path, records: list[dict], meta: dict) -> dict[str, Path]:
    """Write every artefact into ``out_dir``; returns ``{artefact: path}``."""
    out_dir = Path(out_dir)
    plots = render_plots(records)
    paths = {
        "results.json": out_dir / "results.json",
        "results.csv": out_dir / "results.csv",
        "report.md": out_dir / "report.md",
        "report.html": out_dir / "report.html",
    }
    for stem, png in plots.items():
        paths[f"plots/{stem}.png"] = out_dir / "plots" / f"{stem}.png"
        atomic_write_bytes(paths[f"plots/{stem}.png"], png)
    write_results_json(paths["results.json"], records, meta)
    atomic_write_text(paths["results.csv"], csv_text(records))
    atomic_write_text(paths["report.md"], markdown_report(records, meta, plots))
    atomic_write_text(paths["report.html"], html_report(records, meta, plots))
    return paths


# ---- Markdown ----------------------------------------------------------------------------------

def markdown_report(records: list[dict], meta: dict, plots: dict[str, bytes]) -> str:
    parts = [f"# {meta.get('title', 'cnnzoo comparison')}", "", _setting_line(meta), ""]
    parts += [" ".join(meta.get("notes", [])), ""] if meta.get("notes") else []
    parts += ["## Verdict", ""] + [f"- {line}" for line in verdict(records)]
    parts += ["", f"_{TRADE_OFF_RULE}_", "", "## Results", "", markdown_table(records), "", f"_{UNITS_NOTE}_", ""]
    parts += _pareto_lines(records)
    if plots:
        parts += ["## Plots", ""]
        parts += [f"![{title}](plots/{stem}.png)\n" for stem, title in PLOTS if stem in plots]
    failures = [r for r in records if r.get("status") != "done"]
    if failures:
        parts += ["## Not finished", ""]
        for r in failures:
            parts += [f"### {r['name']} ({r.get('status')})", "", r.get("reason") or "", ""]
            if r.get("traceback"):
                parts += ["```", r["traceback"].rstrip(), "```", ""]
    if meta.get("plan"):
        parts += ["## How the models were chosen", "", meta["plan"].get("note", ""), ""]
        if meta["plan"].get("table"):
            parts += ["```", meta["plan"]["table"], "```", ""]
    return "\n".join(parts).rstrip() + "\n"


def _setting_line(meta: dict) -> str:
    data = meta.get("data", {})
    s = meta.get("settings", {})
    bits = [f"Data: **{data.get('source', '?')}**"]
    if data:
        bits.append(f"{data.get('num_classes')} classes, {data.get('train_images')} train / "
                    f"{data.get('val_images')} validation images at {data.get('image_size')} px")
    budget = (f"{s['time_budget_s'] / 60:g} min per model" if s.get("time_budget_s")
              else f"{s.get('epochs')} epochs")
    bits.append(f"{budget}, seed {s.get('seed')}, the same split for every model")
    if meta.get("device"):
        bits.append(f"device {meta['device']}")
    return "; ".join(bits) + "."


def _pareto_lines(records: list[dict]) -> list[str]:
    lines = []
    for cost_key, what in (("macs", "MACs"), ("latency_b1_ms", "latency at batch 1")):
        front = pareto_front(records, cost_key)
        if front:
            lines.append(f"- Pareto front (accuracy vs {what}): {', '.join(front)}")
    return lines + [""] if lines else []


# ---- HTML --------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f3f3f3; } .name, .status { text-align: left; }
tr.failed td, tr.interrupted td { background: #fdecea; }
tr.front td.name { font-weight: bold; }
.verdict li { margin: 0.3em 0; } .note { color: #555; font-size: 0.9em; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; } .plots figure { margin: 0; }
.plots img { max-width: 520px; width: 100%; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
"""


def html_report(records: list[dict], meta: dict, plots: dict[str, bytes]) -> str:
    """One HTML file with everything inline: CSS in <style>, plots as base64 PNG data URIs, no scripts."""
    esc = html.escape
    front = set(pareto_front(records, "macs"))
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{esc(meta.get('title', 'cnnzoo comparison'))}</title>", f"<style>{_CSS}</style>",
           "</head>", "<body>", f"<h1>{esc(meta.get('title', 'cnnzoo comparison'))}</h1>",
           f"<p>{_md_bold_to_html(esc(_setting_line(meta)))}</p>",
           *(f'<p class="note">{esc(note)}</p>' for note in meta.get("notes", [])),
           "<h2>Verdict</h2>", '<ul class="verdict">']
    out += [f"<li>{esc(line)}</li>" for line in verdict(records)]
    out += ["</ul>", f'<p class="note">{esc(TRADE_OFF_RULE)}</p>', "<h2>Results</h2>",
            '<div class="table-wrap">', "<table>"]
    rows = table_rows(records)
    text_columns = ["name", "status"] + [""] * (len(rows[0]) - 2)  # left-aligned; numbers go right
    out.append("<tr>" + "".join(f'<th class="{cls}">{esc(h)}</th>' if cls else f"<th>{esc(h)}</th>"
                                for h, cls in zip(rows[0], text_columns)) + "</tr>")
    for record, row in zip(records, rows[1:]):
        classes = [record.get("status", "")] + (["front"] if record["name"] in front else [])
        cells = "".join(f'<td class="{cls}">{esc(c)}</td>' if cls else f"<td>{esc(c)}</td>"
                        for c, cls in zip(row, text_columns))
        out.append(f'<tr class="{" ".join(classes)}">{cells}</tr>')
    out += ["</table>", "</div>",
            f'<p class="note">{esc(UNITS_NOTE)} Bold names: on the accuracy-vs-MACs Pareto front.</p>']
    pareto = _pareto_lines(records)
    if pareto:
        out += ["<ul>"] + [f"<li>{esc(p[2:])}</li>" for p in pareto if p] + ["</ul>"]
    if plots:
        out += ["<h2>Plots</h2>", '<div class="plots">']
        for stem, title in PLOTS:
            if stem in plots:
                data = base64.b64encode(plots[stem]).decode("ascii")
                out.append(f'<figure><img alt="{esc(title)}" src="data:image/png;base64,{data}">'
                           f"<figcaption>{esc(title)}</figcaption></figure>")
        out.append("</div>")
    failures = [r for r in records if r.get("status") != "done"]
    if failures:
        out.append("<h2>Not finished</h2>")
        for r in failures:
            out.append(f"<h3>{esc(r['name'])} ({esc(str(r.get('status')))})</h3>")
            out.append(f"<p>{esc(r.get('reason') or '')}</p>")
            if r.get("traceback"):
                out.append(f"<details><summary>traceback</summary><pre>{esc(r['traceback'])}</pre></details>")
    if meta.get("plan"):
        out += ["<h2>How the models were chosen</h2>", f"<p>{esc(meta['plan'].get('note', ''))}</p>"]
        if meta["plan"].get("table"):
            out.append(f"<pre>{esc(meta['plan']['table'])}</pre>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _md_bold_to_html(text: str) -> str:
    """The one bit of Markdown the setting line uses: **bold**."""
    pieces = text.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(pieces))
