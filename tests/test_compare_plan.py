"""The comparison as a plan, then a run with the train function it is given; the report as typed
blocks; the comparison's meta as a record that reads back as it was written."""
import json

import pytest

from cnnzoo.compare import ComparisonMeta, plan_comparison, run_plan
from cnnzoo.compare.blocks import (
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
from cnnzoo.compare.record import Misclassified
from cnnzoo.training import TrainConfig, TrainingDiverged

DATA = "synthetic:classes=3,n=36"  # no size: each model is prepared at its own
SPECS = ["mobilenet_v1:width_mult=0.25", "resnet18:width_mult=0.25,image_size=24"]


def quiet(line):
    pass


def test_a_plan_holds_each_models_config_trains_nothing_and_runs_with_the_train_given(tmp_path):
    plan = plan_comparison(SPECS, out_dir=tmp_path, data=DATA, image_size=16, epochs=2, batch_size=16, seed=3,
                           device="cpu", threads=1, repeats=2, progress=False, log=quiet)
    assert not (tmp_path / "results.json").exists()
    first, second = plan.models
    assert isinstance(first.config, TrainConfig)
    assert (first.config.model, first.config.model_args) == ("mobilenet_v1", {"width_mult": 0.25})
    assert (first.config.image_size, second.config.image_size) == (16, 24)
    assert (first.config.epochs, first.config.seed, first.config.batch_size) == (2, 3, 16)
    assert plan.seeds == [3, 4] and first.settings.to_dict()["repeats"] == 2
    assert first.estimate.epochs == 2 and first.reused is None and not first.resume

    given = []

    def fake_train(config, *, data, progress):
        given.append((config.model, config.seed, config.out_dir, config.resume, data.image_size, progress))
        raise TrainingDiverged("stop here: only what each run is given matters")

    result = run_plan(plan, train=fake_train, log=quiet)
    # A failure stops that model's seeds; the next model still runs.
    assert given == [("mobilenet_v1", 3, str(tmp_path / "mobilenet_v1-width_mult-0.25" / "seed-3"), False, 16, False),
                     ("resnet18", 3, str(tmp_path / "resnet18-width_mult-0.25-image_size-24" / "seed-3"), False, 24,
                      False)]
    assert [r.status for r in result.models] == ["failed", "failed"]
    assert result.models[0].settings == first.settings.to_dict()

    meta = result.meta
    assert isinstance(meta, ComparisonMeta) and meta.settings.seed == 3 and meta.data.image_sizes == (16, 24)
    assert meta.device == "cpu" and meta.wall_time_s > 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert ComparisonMeta.from_dict(doc).to_dict() == {key: doc[key] for key in meta.to_dict()}
    assert "trained and timed on cpu" in (tmp_path / "report.md").read_text()


BLOCKS = [
    Heading("Title & co", level=1),
    Paragraph("Data: **digits**", bold_marks=True),
    Paragraph("TypeError: unsupported operand type(s) for ** <x>"),
    Note("a rule"),
    Bullets(("first", "second"), style="verdict"),
    Table(("model", "acc %"), (("m:width_mult=0.5", "91.0"),), "lr", code_columns=(0,), row_styles=("done front",),
          styles_note="Bold names: on the front."),
    Matrix(("a", "b"), ((3, 1), (0, 4))),
    PlotRow((Plot("side", "Side by side", b"png", wide=False),)),
    Plot("alone", "On its own", b"png"),
    Gallery((Misclassified(7, "a", "b", 0.91, "AAAA"),)),
    Details("Traceback <&>"),
]


def test_every_block_renders_to_markdown():
    md = to_markdown(BLOCKS)
    assert md.startswith("# Title & co\n\nData: **digits**\n\nTypeError: unsupported operand type(s) for ** <x>\n\n"
                         "_a rule_\n\n- first\n- second\n\n")
    assert "`m:width_mult=0.5`" in md and "Bold names" not in md  # row styles are shown in HTML only
    assert "| true \\ predicted |" in md
    assert "![Side by side](plots/side.png)\n\n![On its own](plots/alone.png)" in md
    assert "_Thumbnails in report.html._" in md and md.endswith("```\nTraceback <&>\n```\n")


def test_every_block_renders_to_html_escaped():
    page = to_html(BLOCKS, "Title & co")
    assert page.startswith("<!DOCTYPE html>") and "<title>Title &amp; co</title>" in page
    assert "<h1>Title &amp; co</h1>" in page and "<p>Data: <b>digits</b></p>" in page
    assert "<p>TypeError: unsupported operand type(s) for ** &lt;x&gt;</p>" in page  # ** is literal here
    assert '<ul class="verdict">\n<li>first</li>' in page
    assert '<tr class="done front"><td class="text"><code>m:width_mult=0.5</code></td><td>91.0</td></tr>' in page
    assert '<p class="note">Bold names: on the front.</p>' in page
    assert page.count('class="wide"') == 1 and '<div class="plots">' in page
    assert 'alt="validation image 7" src="data:image/png;base64,AAAA"' in page
    assert "<pre>Traceback &lt;&amp;&gt;</pre>" in page


def test_an_unknown_block_is_refused():
    with pytest.raises(TypeError, match="not a report block"):
        to_markdown([("table", ["a"], [["1"]], "l", ())])
