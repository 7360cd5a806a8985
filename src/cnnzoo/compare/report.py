"""The comparison report: ``report.md``, a self-contained ``report.html``, ``results.json``/``.csv``, plots.

Every artefact is written atomically, and all of them are rewritten after each model, so whatever
stops the run (Ctrl-C, a crash, a killed machine) leaves a complete report of what finished.

The sections after the results table (plan, width and resolution, over-fitting, per class, mistakes,
seeds) are built once as plain blocks - paragraphs, tables, images - and rendered to Markdown and to
HTML by one small renderer each, so the two reports cannot drift apart.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from cnnzoo.compare.analysis import (
    INT8_COST_RULE,
    OVERFIT_GAP_POINTS,
    OVERFIT_RULE,
    RECOMMEND_RULE,
    TIE_RULE,
    TRADE_OFF_RULE,
    done,
    int8_cost_sentence,
    pareto_front,
    recommended,
    verdict,
)
from cnnzoo.compare.estimate import format_duration
from cnnzoo.compare.plots import PLOTS, render_plots, varies_width_or_resolution
from cnnzoo.compare.record import ModelRecord, as_records
from cnnzoo.compare.results import csv_text, write_results_json
from cnnzoo.files import atomic_write_bytes, atomic_write_text
from cnnzoo.text import MISSING, format_count, format_percent, table

Records = Sequence[Union[ModelRecord, dict]]

UNITS_NOTE = (
    "MACs = multiply-adds per image at the training image size (FLOPs = 2 x MACs). "
    "Weights MB = parameters + buffers stored as fp32, in 10^6 bytes. "
    "Latency = median over repeats, model in eval mode, on the training device; "
    "batch 1 and the training batch size, both given per image. "
    "Accuracies are on the validation split, which is the same for every model; the 95 % interval is "
    "over its images (Wilson score interval; with repeats, at least mean +- 2 std across seeds). The "
    "best epoch is chosen on these same images, which flatters the best accuracy a little; the test "
    "split, when the data has one, does not."
)
RUNTIME_NOTE = (  # added to UNITS_NOTE when the latencies were measured under `compare --runtime`
    " Latency under {runtime}: the trained model (the first seed's) exported, verified against PyTorch and "
    "timed on the CPU. int8 acc: that same model in int8 on the validation split, with its change from "
    "the model in fp32 in points."
)


def units_note(records: list[ModelRecord]) -> str:
    runtimes = sorted({r.runtime for r in records if r.done and r.runtime != "torch"})
    return UNITS_NOTE + (RUNTIME_NOTE.format(runtime=", ".join(runtimes)) if runtimes else "")
MAX_MATRIX_CLASSES = 20  # larger confusion matrices are unreadable as tables: see each run's evaluation


def _num(fmt: str) -> Callable:
    return lambda v: MISSING if v is None else format(v, fmt)


def _int8_accuracy(r: ModelRecord) -> Optional[str]:
    """The measured model's accuracy in int8, and how far it moved from the same model in fp32."""
    acc = r.runtime_accuracy
    if not acc:
        return None
    return f"{format_percent(acc['int8'])} ({100 * (acc['int8'] - acc['fp32']) + 0.0:+.1f})"


def _interval(r: ModelRecord) -> str:
    interval = r.interval()
    return MISSING if interval is None else f"{format_percent(interval[0])}-{format_percent(interval[1])}"


# The results table as data: (header, record field or function of the record, formatter, shown when).
# report.md, report.html and the table printed at the end all come from this one list; a column whose
# condition no record meets is left out (one seed: no +- column; no test split: no test column).
ALWAYS = None
COLUMNS: tuple[tuple[str, Any, Callable, Any], ...] = (
    ("model", "name", str, ALWAYS),
    ("status", "status", str, ALWAYS),
    ("params", "params", format_count, ALWAYS),
    ("MACs", "macs", format_count, ALWAYS),
    ("px", "image_size", _num("d"), lambda rs: len({r.image_size for r in rs if r.image_size}) > 1),
    ("weights MB", "weights_mb", _num(".2f"), ALWAYS),
    ("epochs", "epochs_run", _num("d"), ALWAYS),
    ("train s", "train_time_s", _num(".1f"), ALWAYS),
    ("s/epoch", "time_per_epoch_s", _num(".2f"), ALWAYS),
    ("train img/s", "train_images_per_s", _num(".0f"), ALWAYS),
    ("ms/img @1", "latency_b1_ms", _num(".2f"), ALWAYS),
    ("ms/img @batch", "latency_batch_ms_per_image", _num(".3f"), ALWAYS),
    ("best acc %", "best_val_acc", format_percent, ALWAYS),
    ("+- seeds", "best_val_acc_std", format_percent, lambda rs: any(r.best_val_acc_std is not None for r in rs)),
    ("95 % interval", _interval, str, lambda rs: any(r.done and r.interval() is not None for r in rs)),
    ("final acc %", "final_val_acc", format_percent, ALWAYS),
    ("best epoch", "best_epoch", _num("d"), ALWAYS),
    ("test acc %", "test_acc", format_percent, lambda rs: any(r.test_acc is not None for r in rs)),
    ("int8 acc % (change)", _int8_accuracy, str, lambda rs: any(r.runtime_accuracy for r in rs)),
)


def _columns(records: list[ModelRecord]):
    return [c for c in COLUMNS if c[3] is ALWAYS or c[3](records)]


def _cell(record: ModelRecord, key, fmt: Callable) -> str:
    value = key(record) if callable(key) else getattr(record, key)
    return MISSING if value is None else fmt(value)


def table_rows(records: Records) -> list[list[str]]:
    """The results table as strings, header first."""
    records = as_records(records)
    columns = _columns(records)
    rows = [[header for header, *_ in columns]]
    for r in records:
        rows.append([_cell(r, key, fmt) for _, key, fmt, _ in columns])
    return rows


def markdown_table(records: Records) -> str:
    """A pipe table, padded so it also reads well as plain text in a terminal."""
    header, *body = table_rows(records)
    return table(body, header, "ll" + "r" * (len(header) - 2), markdown=True)


def write_report(out_dir: Path, records: Records, meta: dict) -> dict[str, Path]:
    """Write every artefact into ``out_dir``; returns ``{artefact: path}``."""
    out_dir = Path(out_dir)
    records = as_records(records)
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
    as_dicts = [r.to_dict() for r in records]
    write_results_json(paths["results.json"], as_dicts, meta)
    atomic_write_text(paths["results.csv"], csv_text(as_dicts))
    atomic_write_text(paths["report.md"], markdown_report(records, meta, plots))
    atomic_write_text(paths["report.html"], html_report(records, meta, plots))
    return paths


# ---- the sections, as blocks ---------------------------------------------------------------------
# ("p", text) | ("note", text) | ("table", headers, rows, align, code_columns) | ("h3", text)
# | ("plot", stem) | ("matrix", class_names, counts) | ("gallery", [Misclassified]) | ("pre", text)
# code_columns: indices of columns that hold model specs, set as code (what one types on the command
# line); the results table alone names models in plain text, one row each.
SPEC = (0,)

def sections(records: list[ModelRecord], meta: dict, plots: dict[str, bytes]) -> list[tuple[str, list]]:
    """``[(heading, blocks)]`` of everything after the results table."""
    finished = done(records)
    out = [("Plan: estimated and actual time", _plan_blocks(records, meta))]
    if finished and varies_width_or_resolution(finished):
        out.append(("Width and resolution", _width_resolution_blocks(finished, plots)))
    if any(r.final_train_acc is not None for r in finished):
        out.append(("Over-fitting", _overfit_blocks(finished, plots)))
    if any(r.runtime_accuracy for r in finished):
        out.append(("int8 against fp32 (validation split)", _int8_blocks(finished)))
    with_classes = [r for r in finished if r.per_class is not None]
    if with_classes:
        out.append(("Per class (validation split)", _per_class_blocks(with_classes)))
        pick = recommended(finished)
        if pick is not None and pick.per_class is not None:
            out.append((f"Mistakes of the recommended model, {pick.name}", _gallery_blocks(pick)))
    if any(len(r.runs) > 1 for r in finished):
        out.append(("Seeds", _seed_blocks(finished)))
    main_plots = [("plot", stem) for stem, _ in PLOTS[:4] if stem in plots]
    if main_plots:
        out.append(("Plots", main_plots))
    failures = [r for r in records if not r.done]
    if failures:
        blocks = []
        for r in failures:
            blocks += [("h3", f"{r.name} ({r.status})"), ("p", r.reason or "")]
            if r.traceback:
                blocks.append(("pre", r.traceback.rstrip()))
        out.append(("Not finished", blocks))
    if meta.get("plan"):
        blocks = [("p", meta["plan"].get("note", ""))]
        if meta["plan"].get("table"):
            blocks.append(("pre", meta["plan"]["table"]))
        out.append(("How the models were chosen", blocks))
    return out


def _plan_blocks(records: list[ModelRecord], meta: dict) -> list:
    estimate = meta.get("estimate") or {}
    blocks: list = [("note", "Estimated before training from a few timed training steps per model (all "
                             "seeds; latency measurement and per-class evaluation not included); actual = "
                             "the training time of all seeds.")]
    rows, est_sum, act_sum = [], 0.0, 0.0
    for r in records:
        actual = r.total_train_time_s if r.done else None
        ratio = f"{actual / r.estimated_s:.2f}" if actual and r.estimated_s else MISSING
        if r.estimated_s and actual:
            est_sum, act_sum = est_sum + r.estimated_s, act_sum + actual
        rows.append([r.name, format_duration(r.estimated_s) if r.estimated_s else
                     ("reused" if r.done else MISSING), format_duration(actual), ratio,
                     _num("d")(r.planned_epochs), _num("d")(r.epochs_run)])
    blocks.append(("table", ["model", "estimated", "actual", "actual / estimated", "planned epochs",
                             "epochs run"], rows, "lrrrrr", SPEC))
    facts = []
    if estimate.get("total_s") is not None:
        facts.append(f"estimated total before training: {format_duration(estimate['total_s'])}")
    if est_sum:
        facts.append(f"models trained: estimated {format_duration(est_sum)}, took {format_duration(act_sum)}")
    if meta.get("wall_time_s") is not None:
        facts.append(f"whole comparison (loading, estimating, training, measuring): "
                     f"{format_duration(meta['wall_time_s'])}")
    if meta.get("total_time_s"):
        facts.append(f"total budget: {format_duration(meta['total_time_s'])}")
    if facts:
        blocks.append(("p", "; ".join(facts) + "."))
    return blocks


def _width_resolution_blocks(records: list[ModelRecord], plots: dict) -> list:
    ordered = sorted(records, key=lambda r: (r.model, r.width_mult or 0, r.image_size or 0))
    rows = [[r.name, r.model, _num("g")(r.width_mult), _num("d")(r.image_size), format_count(r.macs),
             format_percent(r.best_val_acc), _interval(r)] for r in ordered]
    blocks: list = [("note", "Width (alpha) and input resolution, the two knobs of the MobileNet paper, "
                             "measured on this data: MACs grow with alpha^2 and with the square of the side.")]
    blocks.append(("table", ["spec", "model", "alpha", "px", "MACs", "best acc %", "95 % interval"], rows,
                   "llrrrrr", SPEC))
    if "width_and_resolution" in plots:
        blocks.append(("plot", "width_and_resolution"))
    return blocks


def _overfit_blocks(records: list[ModelRecord], plots: dict) -> list:
    rows = []
    for r in records:
        gap = r.overfit_gap
        flag = "over-fitting" if gap is not None and 100 * gap > OVERFIT_GAP_POINTS else ""
        rows.append([r.name, format_percent(r.final_train_acc), format_percent(r.final_val_acc),
                     MISSING if gap is None else f"{100 * gap:.1f}", flag])
    blocks: list = [("note", OVERFIT_RULE),
                    ("table", ["model", "train acc % (last epoch)", "val acc % (last epoch)", "gap (points)",
                               "flag"], rows, "lrrrl", SPEC)]
    if "train_val_curves" in plots:
        blocks.append(("plot", "train_val_curves"))
    return blocks


def _int8_blocks(records: list[ModelRecord]) -> list:
    rows = []
    for r in records:
        acc = r.runtime_accuracy
        if not acc:
            continue
        agreement = acc.get("agreement")
        rows.append([r.name, format_percent(acc["fp32"]), format_percent(acc["int8"]),
                     f"{100 * (acc['int8'] - acc['fp32']) + 0.0:+.1f}", str(acc["now_wrong"]), str(acc["now_right"]),
                     MISSING if agreement is None else format_percent(agreement),
                     "int8 cost" if int8_cost_sentence(r) else ""])
    return [("note", INT8_COST_RULE),
            ("table", ["model", "fp32 acc %", "int8 acc %", "change (points)", "became wrong", "became right",
                       "same class as fp32 %", "flag"], rows, "lrrrrrrl", SPEC)]


def _per_class_blocks(records: list[ModelRecord]) -> list:
    names = records[0].per_class.class_names
    same = [r for r in records if r.per_class.class_names == names]
    rows = [[name, str(same[0].per_class.support[i])] + [format_percent(r.per_class.accuracy[i]) for r in same]
            for i, name in enumerate(names)]
    blocks: list = [("note", "Accuracy per class (correct / images of the class, i.e. recall), of each model's "
                             "best checkpoint - the first seed's with repeats - as `cnnzoo evaluate "
                             "<run>/best.pt --split val` scores it."),
                    ("table", ["class", "images"] + [r.name for r in same], rows, "lr" + "r" * len(same), ())]
    for r in same:
        blocks.append(("h3", f"Confusion matrix: {r.name} (rows: true class, columns: predicted)"))
        if len(names) <= MAX_MATRIX_CLASSES:
            blocks.append(("matrix", names, r.per_class.confusion_matrix))
        else:
            blocks.append(("p", f"{len(names)} classes: too many for a table; `cnnzoo evaluate {r.run_dir}/best.pt "
                                "--split val` draws it."))
    return blocks


def _gallery_blocks(record: ModelRecord) -> list:
    mistakes = record.per_class.misclassified
    if not mistakes:
        return [("p", "It got every validation image right.")]
    return [("note", f"The {len(mistakes)} validation images it got wrong with the most confidence "
                     "(true class, predicted class, the probability it gave its answer)."),
            ("gallery", mistakes)]


def _seed_blocks(records: list[ModelRecord]) -> list:
    rows = []
    for r in records:
        for run in r.runs:
            rows.append([r.name, str(run.seed), format_percent(run.best_val_acc), format_percent(run.final_val_acc),
                         str(run.best_epoch), str(run.epochs_run), f"{run.train_time_s:.1f}",
                         format_percent(run.test_acc)])
    return [("table", ["model", "seed", "best acc %", "final acc %", "best epoch", "epochs", "train s",
                       "test acc %"], rows, "lrrrrrrr", SPEC)]


# ---- Markdown ----------------------------------------------------------------------------------

def markdown_report(records: Records, meta: dict, plots: dict[str, bytes]) -> str:
    records = as_records(records)
    parts = [f"# {meta.get('title', 'cnnzoo comparison')}", "", _setting_line(meta), ""]
    parts += [" ".join(meta.get("notes", [])), ""] if meta.get("notes") else []
    parts += ["## Verdict", ""] + [f"- {line}" for line in verdict(records)]
    parts += [""] + [f"_{rule}_\n" for rule in (TRADE_OFF_RULE, TIE_RULE, RECOMMEND_RULE)]
    parts += ["## Results", "", markdown_table(records), "", f"_{units_note(records)}_", ""]
    parts += _pareto_lines(records)
    titles = dict(PLOTS)
    for heading, blocks in sections(records, meta, plots):
        parts += [f"## {heading}", ""]
        for block in blocks:
            parts += _markdown_block(block, titles, plots) + [""]
    return "\n".join(parts).rstrip() + "\n"


def _markdown_block(block: tuple, titles: dict, plots: dict) -> list[str]:
    kind = block[0]
    if kind == "p":
        return [block[1]]
    if kind == "note":
        return [f"_{block[1]}_"]
    if kind == "h3":
        return [f"### {block[1]}"]
    if kind == "pre":
        return ["```", block[1], "```"]
    if kind == "table":
        _, headers, rows, align, code = block
        rows = [[f"`{c}`" if i in code else c for i, c in enumerate(row)] for row in rows]
        return [table(rows, headers, align, markdown=True)]
    if kind == "plot":
        return [f"![{titles[block[1]]}](plots/{block[1]}.png)"] if block[1] in plots else []
    if kind == "matrix":
        _, names, counts = block
        rows = [[name] + [str(c) for c in row] for name, row in zip(names, counts)]
        return [table(rows, ["true \\ predicted"] + list(names), "l" + "r" * len(names), markdown=True)]
    if kind == "gallery":
        rows = [[str(m.index), m.true_class, m.predicted_class, f"{100 * m.confidence:.0f} %"] for m in block[1]]
        return [table(rows, ["val image", "true", "predicted", "confidence"], "rllr", markdown=True),
                "", "_Thumbnails in report.html._"]
    raise ValueError(f"unknown report block {kind!r}")


def _setting_line(meta: dict) -> str:
    data = meta.get("data", {})
    s = meta.get("settings", {})
    bits = [f"Data: **{data.get('source', '?')}**"]
    if data:
        test = f" / {data['test_images']} test" if data.get("test_images") else ""
        sizes = data.get("image_sizes") or []
        px = ", ".join(map(str, sizes)) if len(sizes) > 1 else data.get("image_size")
        bits.append(f"{data.get('num_classes')} classes, {data.get('train_images')} train / "
                    f"{data.get('val_images')} validation{test} images at {px} px")
    if meta.get("total_time_s"):
        budget = f"{meta['total_time_s'] / 60:g} min in all ({s['time_budget_s'] / 60:.3g} min per model)"
    elif s.get("time_budget_s"):
        budget = f"{s['time_budget_s'] / 60:g} min per model"
    else:
        budget = f"{s.get('epochs')} epochs"
    repeats = meta.get("repeats") or 1
    seeds = f"seeds {s.get('seed')}-{s.get('seed', 0) + repeats - 1}" if repeats > 1 else f"seed {s.get('seed')}"
    bits.append(f"{budget}, {seeds}, the same split for every model")
    if meta.get("device"):
        bits.append(f"device {meta['device']}")
    return "; ".join(bits) + "."


def _pareto_lines(records: list[ModelRecord]) -> list[str]:
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
h3 { font-size: 1.05em; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f3f3f3; } .name, .status, td.text, th.text { text-align: left; }
tr.failed td, tr.interrupted td { background: #fdecea; }
tr.front td.name { font-weight: bold; }
.verdict li { margin: 0.3em 0; } .note { color: #555; font-size: 0.9em; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; } .plots figure { margin: 0; }
.plots img { max-width: 520px; width: 100%; border: 1px solid #eee; }
img.wide { max-width: 760px; width: 100%; border: 1px solid #eee; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8em; }
.gallery figure { margin: 0; width: 112px; font-size: 0.75em; text-align: center; }
.gallery img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated;
               border: 1px solid #ccc; background: #fafafa; }
.gallery figcaption span { display: block; } .gallery .wrong { color: #b00020; } .gallery .index { color: #888; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
"""


def html_report(records: Records, meta: dict, plots: dict[str, bytes]) -> str:
    """One HTML file with everything inline: CSS in <style>, plots and thumbnails as base64 PNG data
    URIs, no scripts."""
    records = as_records(records)
    esc = html.escape
    front = set(pareto_front(records, "macs"))
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{esc(meta.get('title', 'cnnzoo comparison'))}</title>", f"<style>{_CSS}</style>",
           "</head>", "<body>", f"<h1>{esc(meta.get('title', 'cnnzoo comparison'))}</h1>",
           f"<p>{_md_bold_to_html(esc(_setting_line(meta)))}</p>",
           *(f'<p class="note">{esc(note)}</p>' for note in meta.get("notes", [])),
           "<h2>Verdict</h2>", '<ul class="verdict">']
    out += [f"<li>{esc(line)}</li>" for line in verdict(records)]
    out += ["</ul>"] + [f'<p class="note">{esc(rule)}</p>' for rule in (TRADE_OFF_RULE, TIE_RULE, RECOMMEND_RULE)]
    out += ["<h2>Results</h2>", '<div class="table-wrap">', "<table>"]
    rows = table_rows(records)
    text_columns = ["name", "status"] + [""] * (len(rows[0]) - 2)  # left-aligned; numbers go right
    out.append("<tr>" + "".join(f'<th class="{cls}">{esc(h)}</th>' if cls else f"<th>{esc(h)}</th>"
                                for h, cls in zip(rows[0], text_columns)) + "</tr>")
    for record, row in zip(records, rows[1:]):
        classes = [record.status] + (["front"] if record.name in front else [])
        cells = "".join(f'<td class="{cls}">{esc(c)}</td>' if cls else f"<td>{esc(c)}</td>"
                        for c, cls in zip(row, text_columns))
        out.append(f'<tr class="{" ".join(classes)}">{cells}</tr>')
    out += ["</table>", "</div>",
            f'<p class="note">{esc(units_note(records))} Bold names: on the accuracy-vs-MACs Pareto front.</p>']
    pareto = _pareto_lines(records)
    if pareto:
        out += ["<ul>"] + [f"<li>{esc(p[2:])}</li>" for p in pareto if p] + ["</ul>"]
    titles = dict(PLOTS)
    for heading, blocks in sections(records, meta, plots):
        out.append(f"<h2>{esc(heading)}</h2>")
        if heading == "Plots":
            out += ['<div class="plots">'] + [_html_figure(stem, titles[stem], plots[stem]) for _, stem in blocks]
            out.append("</div>")
            continue
        for block in blocks:
            out += _html_block(block, titles, plots)
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _html_figure(stem: str, title: str, png: bytes, cls: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    attr = f' class="{cls}"' if cls else ""
    return (f'<figure><img{attr} alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(title)}</figcaption></figure>")


def _html_table(headers: list[str], rows: list[list[str]], align: str, code: tuple = ()) -> list[str]:
    esc = html.escape
    align = align.ljust(len(headers), "l")
    cls = [' class="text"' if a == "l" else "" for a in align]

    def cell(i: int, value) -> str:
        return f"<code>{esc(str(value))}</code>" if i in code else esc(str(value))

    out = ['<div class="table-wrap">', "<table>",
           "<tr>" + "".join(f"<th{c}>{esc(h)}</th>" for h, c in zip(headers, cls)) + "</tr>"]
    out += ["<tr>" + "".join(f"<td{c}>{cell(i, v)}</td>" for i, (v, c) in enumerate(zip(row, cls))) + "</tr>"
            for row in rows]
    return out + ["</table>", "</div>"]


def _html_block(block: tuple, titles: dict, plots: dict) -> list[str]:
    esc = html.escape
    kind = block[0]
    if kind == "p":
        return [f"<p>{esc(block[1])}</p>"]
    if kind == "note":
        return [f'<p class="note">{esc(block[1])}</p>']
    if kind == "h3":
        return [f"<h3>{esc(block[1])}</h3>"]
    if kind == "pre":
        return [f"<details><summary>details</summary><pre>{esc(block[1])}</pre></details>"]
    if kind == "table":
        return _html_table(*block[1:])
    if kind == "plot":
        stem = block[1]
        return [_html_figure(stem, titles[stem], plots[stem], "wide")] if stem in plots else []
    if kind == "matrix":
        _, names, counts = block
        out = ['<div class="table-wrap">', "<table>",
               '<tr><th class="text">true \\ predicted</th>' + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>"]
        for name, row in zip(names, counts):
            total = max(sum(row), 1)
            cells = "".join(f'<td style="background: rgba(31, 119, 180, {0.75 * c / total:.2f})">{c}</td>'
                            for c in row)
            out.append(f'<tr><td class="text">{esc(name)}</td>{cells}</tr>')
        return out + ["</table>", "</div>"]
    if kind == "gallery":
        out = ['<div class="gallery">']
        for m in block[1]:
            out.append(f'<figure><img alt="validation image {m.index}" src="data:image/png;base64,{m.thumbnail_png}">'
                       f"<figcaption><span>{esc(m.true_class)}</span>"
                       f'<span class="wrong">as {esc(m.predicted_class)} ({100 * m.confidence:.0f} %)</span>'
                       f'<span class="index">val #{m.index}</span></figcaption></figure>')
        return out + ["</div>"]
    raise ValueError(f"unknown report block {kind!r}")


def _md_bold_to_html(text: str) -> str:
    """The one bit of Markdown the setting line uses: **bold**."""
    pieces = text.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(pieces))
