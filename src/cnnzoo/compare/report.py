"""The comparison report: ``report.md``, a self-contained ``report.html``, ``results.json``/``.csv``, plots.

Every artefact is written atomically, and all of them are rewritten after each model, so whatever
stops the run (Ctrl-C, a crash, a killed machine) leaves a complete report of what finished.

The whole report - title and setting line, verdict, results table, then the sections (plan, width
and resolution, over-fitting, int8, per class, mistakes, seeds, plots, failures) - is built once by
:func:`report_blocks` as a list of typed blocks (:mod:`cnnzoo.compare.blocks`), which one renderer
turns into Markdown and one into HTML, so the two reports cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from cnnzoo.compare.analysis import (
    INT8_COST_RULE,
    OVERFIT_GAP_POINTS,
    OVERFIT_RULE,
    RECOMMEND_RULE,
    TIE_RULE,
    done,
    int8_cost_sentence,
    pareto_front,
    recommended,
    verdict,
)
from cnnzoo.compare.blocks import (
    Block,
    Bullets,
    Details,
    Gallery,
    Heading,
    Matrix,
    Note,
    Paragraph,
    Plot,
    PlotRow,
    Table,
    to_html,
    to_markdown,
)
from cnnzoo.compare.estimate import format_duration
from cnnzoo.compare.meta import ComparisonMeta, as_meta
from cnnzoo.compare.plots import PLOTS, render_plots, varies_width_or_resolution
from cnnzoo.compare.record import ModelRecord, PerClass, as_records
from cnnzoo.compare.results import csv_text, write_results_json
from cnnzoo.files import atomic_write_bytes, atomic_write_text
from cnnzoo.text import MISSING, format_count, format_percent, table

Records = Sequence[Union[ModelRecord, dict]]
Meta = Union[ComparisonMeta, dict]

UNITS_NOTE = (
    "val acc % = the best validation accuracy +- half its 95 % interval: the noise to read it with "
    "(over the validation images, Wilson score interval; with repeats, at least mean +- 2 std across "
    "seeds; the exact bounds are in the details). The validation split is the same for every model; "
    "the best epoch is chosen on these same images, which flatters it a little; the test split, when "
    "the data has one, does not. "
    "MACs = multiply-adds per image at the training image size (FLOPs = 2 x MACs). "
    "ms/img = latency per image at batch 1 (at the training batch size in the details), median over "
    "repeats, model in eval mode, on the training device. "
    "size MB = parameters + buffers stored as fp32, in 10^6 bytes. train s = training time per run."
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
    return None if acc is None else f"{format_percent(acc.int8)} ({acc.change()})"


def _interval(r: ModelRecord) -> str:
    interval = r.interval()
    return MISSING if interval is None else f"{format_percent(interval[0])}-{format_percent(interval[1])}"


def _accuracy_and_noise(r: ModelRecord) -> Optional[str]:
    """'94.5 +- 1.8': the best validation accuracy and half its 95 % interval (the noise to read it with)."""
    if r.best_val_acc is None:
        return None
    interval = r.interval()
    if interval is None:
        return format_percent(r.best_val_acc)
    return f"{format_percent(r.best_val_acc)} +- {format_percent((interval[1] - interval[0]) / 2)}"


@dataclass(frozen=True)
class Column:
    """One column of a results table: a record field (or a function of the record), its format, and
    when it is shown (None: always; else a test on the records: one seed has no +- column)."""

    header: str
    key: Union[str, Callable[[ModelRecord], Any]]
    fmt: Callable[[Any], str] = str
    shown: Optional[Callable[[list[ModelRecord]], bool]] = None
    text: bool = False  # left-aligned words; numbers are right-aligned

    def cell(self, record: ModelRecord) -> str:
        value = self.key(record) if callable(self.key) else getattr(record, self.key)
        return MISSING if value is None else self.fmt(value)


def _some_unfinished(rs: list[ModelRecord]) -> bool:
    return any(not r.done for r in rs)


def _sizes_differ(rs: list[ModelRecord]) -> bool:
    return len({r.image_size for r in rs if r.image_size}) > 1


# The results as two tables: what decides (report.md, report.html and the table printed at the end
# of `cnnzoo compare`), and the rest, in the report only; results.csv has every number. A column
# whose condition no record meets is left out.
DECIDING: tuple[Column, ...] = (
    Column("model", "name", text=True),
    Column("status", "status", shown=_some_unfinished, text=True),
    Column("px", "image_size", _num("d"), _sizes_differ),
    Column("val acc %", _accuracy_and_noise),
    Column("test acc %", "test_acc", format_percent, lambda rs: any(r.test_acc is not None for r in rs)),
    Column("params", "params", format_count),
    Column("MACs", "macs", format_count),
    Column("ms/img", "latency_b1_ms", _num(".2f")),
    Column("size MB", "weights_mb", _num(".2f")),
    Column("train s", "train_time_s", _num(".1f")),
)
DETAILS: tuple[Column, ...] = (
    Column("model", "name", text=True),
    Column("95 % interval", _interval, shown=lambda rs: any(r.done and r.interval() is not None for r in rs)),
    Column("+- seeds", "best_val_acc_std", format_percent, lambda rs: any(r.best_val_acc_std is not None for r in rs)),
    Column("final acc %", "final_val_acc", format_percent),
    Column("best epoch", "best_epoch", _num("d")),
    Column("epochs", "epochs_run", _num("d")),
    Column("s/epoch", "time_per_epoch_s", _num(".2f")),
    Column("train img/s", "train_images_per_s", _num(".0f")),
    Column("ms/img @batch", "latency_batch_ms_per_image", _num(".3f")),
    Column("TTA acc %", "tta_acc", format_percent, lambda rs: any(r.tta_acc is not None for r in rs)),
    Column("int8 acc % (change)", _int8_accuracy, shown=lambda rs: any(r.runtime_accuracy for r in rs)),
)


def _shown(columns: Sequence[Column], records: list[ModelRecord]) -> list[Column]:
    return [c for c in columns if c.shown is None or c.shown(records)]


def table_rows(records: Records, columns: Sequence[Column] = DECIDING) -> list[list[str]]:
    """A results table as strings, header first (the deciding columns unless others are given)."""
    records = as_records(records)
    shown = _shown(columns, records)
    return [[c.header for c in shown]] + [[c.cell(r) for c in shown] for r in records]


def table_align(records: Records, columns: Sequence[Column] = DECIDING) -> str:
    """'l' for each column of words, 'r' for each of numbers."""
    return "".join("l" if c.text else "r" for c in _shown(columns, as_records(records)))


def markdown_table(records: Records) -> str:
    """The deciding columns as a pipe table, padded so it also reads well as plain text in a terminal."""
    header, *body = table_rows(records)
    return table(body, header, table_align(records), markdown=True)


def write_report(out_dir: Path, records: Records, meta: Meta) -> dict[str, Path]:
    """Write every artefact into ``out_dir``; returns ``{artefact: path}``."""
    out_dir = Path(out_dir)
    records, meta = as_records(records), as_meta(meta)
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
    write_results_json(paths["results.json"], as_dicts, meta.to_dict())
    atomic_write_text(paths["results.csv"], csv_text(as_dicts))
    blocks = report_blocks(records, meta, plots)
    atomic_write_text(paths["report.md"], to_markdown(blocks))
    atomic_write_text(paths["report.html"], to_html(blocks, meta.title))
    return paths


def markdown_report(records: Records, meta: Meta, plots: dict[str, bytes]) -> str:
    return to_markdown(report_blocks(as_records(records), as_meta(meta), plots))


def html_report(records: Records, meta: Meta, plots: dict[str, bytes]) -> str:
    meta = as_meta(meta)
    return to_html(report_blocks(as_records(records), meta, plots), meta.title)


def report_blocks(records: list[ModelRecord], meta: ComparisonMeta, plots: dict[str, bytes]) -> list[Block]:
    """The whole report, top to bottom: title, setting line and notes, verdict, results, sections."""
    blocks: list[Block] = [Heading(meta.title, level=1), Paragraph(_setting_line(meta), bold_marks=True)]
    blocks += [Note(note) for note in meta.notes]
    blocks += [Heading("Verdict"), Bullets(tuple(verdict(records)), style="verdict")]
    blocks += [Note(rule) for rule in (TIE_RULE, RECOMMEND_RULE)]
    blocks += _results_blocks(records)
    for heading, section in sections(records, meta, plots):
        blocks += [Heading(heading), *section]
    return blocks


# ---- the parts, as blocks ----------------------------------------------------------------------

SPEC = (0,)  # the column of a table that holds model specs: set as code (what one types on the command line)


def _setting_line(meta: ComparisonMeta) -> str:
    data, s = meta.data, meta.settings
    bits = [f"Data: **{data.source}**"]
    if data.train_images is not None:
        test = f" / {data.test_images} test" if data.test_images else ""
        px = ", ".join(map(str, data.image_sizes)) if len(data.image_sizes) > 1 else data.image_size
        bits.append(f"{data.num_classes} classes, {data.train_images} train / "
                    f"{data.val_images} validation{test} images at {px} px")
    if meta.total_time_s and s.time_budget_s:  # a total time is always shared out as a budget per model
        budget = f"{meta.total_time_s / 60:g} min in all ({s.time_budget_s / 60:.3g} min per model)"
    elif s.time_budget_s:
        budget = f"{s.time_budget_s / 60:g} min per model"
    else:
        budget = f"{s.epochs} epochs"
    seeds = meta.seeds
    seeds_text = f"seeds {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"
    bits.append(f"{budget}, {seeds_text}, the same split for every model")
    if meta.device:
        bits.append(f"trained and timed on {meta.device}")
    return "; ".join(bits) + "."


def _results_blocks(records: list[ModelRecord]) -> list[Block]:
    header, *body = table_rows(records)
    front = set(pareto_front(records, "macs"))
    styles = tuple(" ".join([r.status] + (["front"] if r.name in front else [])) for r in records)
    details_header, *details = table_rows(records, DETAILS)
    blocks: list[Block] = [
        Heading("Results"),
        Table(tuple(header), tuple(map(tuple, body)), table_align(records), row_styles=styles,
              styles_note="Bold names: on the accuracy-vs-MACs Pareto front."),
        Note(units_note(records)),
        Heading("Training and timing details", level=3),
        Table(tuple(details_header), tuple(map(tuple, details)), table_align(records, DETAILS)),
        Note("Every number of every model, with the settings it was trained with, is in results.csv and "
             "results.json.")]
    fronts = [f"Pareto front (accuracy vs {what}): {', '.join(front)}"
              for front, what in ((pareto_front(records, "macs"), "MACs"),
                                  (pareto_front(records, "latency_b1_ms"), "latency at batch 1")) if front]
    return blocks + ([Bullets(tuple(fronts))] if fronts else [])


def sections(records: list[ModelRecord], meta: ComparisonMeta,
             plots: dict[str, bytes]) -> list[tuple[str, list[Block]]]:
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
            out.append((f"Mistakes of the recommended model, {pick.name}", _gallery_blocks(pick.per_class)))
    if any(len(r.runs) > 1 for r in finished):
        out.append(("Seeds", _seed_blocks(finished)))
    main_plots = tuple(_plot(stem, plots, wide=False) for stem, _ in PLOTS[:4] if stem in plots)
    if main_plots:
        out.append(("Plots", [PlotRow(main_plots)]))
    failures = [r for r in records if not r.done]
    if failures:
        out.append(("Not finished", [block for r in failures for block in _failure_blocks(r)]))
    if meta.chosen is not None:
        chosen: list[Block] = [Paragraph(meta.chosen.note)]
        out.append(("How the models were chosen", chosen + ([Details(meta.chosen.table)] if meta.chosen.table else [])))
    return out


def _plot(stem: str, plots: dict[str, bytes], wide: bool = True) -> Plot:
    return Plot(stem, dict(PLOTS)[stem], plots[stem], wide)


def _failure_blocks(r: ModelRecord) -> list[Block]:
    blocks: list[Block] = [Heading(f"{r.name} ({r.status})", level=3), Paragraph(r.reason or "")]
    return blocks + ([Details(r.traceback.rstrip())] if r.traceback else [])


def _plan_blocks(records: list[ModelRecord], meta: ComparisonMeta) -> list[Block]:
    rows, est_sum, act_sum = [], 0.0, 0.0
    for r in records:
        actual = r.total_train_time_s if r.done else None
        ratio = f"{actual / r.estimated_s:.2f}" if actual and r.estimated_s else MISSING
        if r.estimated_s and actual:
            est_sum, act_sum = est_sum + r.estimated_s, act_sum + actual
        rows.append((r.name, format_duration(r.estimated_s) if r.estimated_s else
                     ("reused" if r.done else MISSING), format_duration(actual), ratio,
                     _num("d")(r.planned_epochs), _num("d")(r.epochs_run)))
    blocks: list[Block] = [
        Note("Estimated before training from a few timed training steps per model (all seeds; latency "
             "measurement and per-class evaluation not included); actual = the training time of all seeds."),
        Table(("model", "estimated", "actual", "actual / estimated", "planned epochs", "epochs run"), tuple(rows),
              "lrrrrr", SPEC)]
    facts = []
    if meta.estimated_total_s is not None:
        facts.append(f"estimated total before training: {format_duration(meta.estimated_total_s)}")
    if est_sum:
        facts.append(f"models trained: estimated {format_duration(est_sum)}, took {format_duration(act_sum)}")
    if meta.wall_time_s is not None:
        facts.append(f"whole comparison (loading, estimating, training, measuring): "
                     f"{format_duration(meta.wall_time_s)}")
    if meta.total_time_s:
        facts.append(f"total budget: {format_duration(meta.total_time_s)}")
    return blocks + ([Paragraph("; ".join(facts) + ".")] if facts else [])


def _width_resolution_blocks(records: list[ModelRecord], plots: dict[str, bytes]) -> list[Block]:
    ordered = sorted(records, key=lambda r: (r.model, r.width_mult or 0, r.image_size or 0))
    rows = tuple((r.name, r.model, _num("g")(r.width_mult), _num("d")(r.image_size), format_count(r.macs),
                  format_percent(r.best_val_acc), _interval(r)) for r in ordered)
    blocks: list[Block] = [
        Note("Width (alpha) and input resolution, the two knobs of the MobileNet paper, measured on this data: "
             "MACs grow with alpha^2 and with the square of the side."),
        Table(("spec", "model", "alpha", "px", "MACs", "best acc %", "95 % interval"), rows, "llrrrrr", SPEC)]
    return blocks + ([_plot("width_and_resolution", plots)] if "width_and_resolution" in plots else [])


def _overfit_blocks(records: list[ModelRecord], plots: dict[str, bytes]) -> list[Block]:
    rows = []
    for r in records:
        gap = r.overfit_gap
        flag = "over-fitting" if gap is not None and 100 * gap > OVERFIT_GAP_POINTS else ""
        rows.append((r.name, format_percent(r.final_train_acc), format_percent(r.final_val_acc),
                     MISSING if gap is None else f"{100 * gap:.1f}", flag))
    blocks: list[Block] = [
        Note(OVERFIT_RULE),
        Table(("model", "train acc % (last epoch)", "val acc % (last epoch)", "gap (points)", "flag"), tuple(rows),
              "lrrrl", SPEC)]
    return blocks + ([_plot("train_val_curves", plots)] if "train_val_curves" in plots else [])


def _int8_blocks(records: list[ModelRecord]) -> list[Block]:
    rows = []
    for r in records:
        acc = r.runtime_accuracy
        if acc is None:
            continue
        rows.append((r.name, format_percent(acc.fp32), format_percent(acc.int8), acc.change(), str(acc.became_wrong),
                     str(acc.became_right), MISSING if r.int8_agreement is None else format_percent(r.int8_agreement),
                     "int8 cost" if int8_cost_sentence(r) else ""))
    return [Note(INT8_COST_RULE),
            Table(("model", "fp32 acc %", "int8 acc %", "change (points)", "became wrong", "became right",
                   "same class as fp32 %", "flag"), tuple(rows), "lrrrrrrl", SPEC)]


def _per_class_blocks(records: list[ModelRecord]) -> list[Block]:
    scored = [(r, r.per_class) for r in records if r.per_class is not None]
    names = scored[0][1].class_names
    same = [(r, p) for r, p in scored if p.class_names == names]
    rows = tuple((name, str(same[0][1].support[i]), *(format_percent(p.accuracy[i]) for _, p in same))
                 for i, name in enumerate(names))
    blocks: list[Block] = [
        Note("Accuracy per class (correct / images of the class, i.e. recall), of each model's best checkpoint - "
             "the first seed's with repeats - as `cnnzoo evaluate <run>/best.pt --split val` scores it."),
        Table(("class", "images", *(r.name for r, _ in same)), rows, "lr" + "r" * len(same))]
    for r, per_class in same:
        blocks.append(Heading(f"Confusion matrix: {r.name} (rows: true class, columns: predicted)", level=3))
        if len(names) <= MAX_MATRIX_CLASSES:
            blocks.append(Matrix(tuple(names), tuple(map(tuple, per_class.confusion_matrix))))
        else:
            blocks.append(Paragraph(f"{len(names)} classes: too many for a table; `cnnzoo evaluate "
                                    f"{r.run_dir}/best.pt --split val` draws it."))
    return blocks


def _gallery_blocks(per_class: PerClass) -> list[Block]:
    mistakes = per_class.misclassified
    if not mistakes:
        return [Paragraph("It got every validation image right.")]
    return [Note(f"The {len(mistakes)} validation images it got wrong with the most confidence "
                 "(true class, predicted class, the probability it gave its answer)."),
            Gallery(tuple(mistakes))]


def _seed_blocks(records: list[ModelRecord]) -> list[Block]:
    rows = tuple((r.name, str(run.seed), format_percent(run.best_val_acc), format_percent(run.final_val_acc),
                  str(run.best_epoch), str(run.epochs_run), f"{run.train_time_s:.1f}", format_percent(run.test_acc))
                 for r in records for run in r.runs)
    return [Table(("model", "seed", "best acc %", "final acc %", "best epoch", "epochs", "train s", "test acc %"),
                  rows, "lrrrrrrr", SPEC)]
