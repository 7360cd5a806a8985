"""Results that show themselves: TrainResult, EvalResult and Comparison as a learner ends a cell with
them, in plain Python and in a real Jupyter kernel (nbclient), reading the outputs a notebook renders."""
import base64
import dataclasses
import html
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

import cnnzoo
from cnnzoo.compare import LatencySettings
from cnnzoo.compare.analysis import verdict
from cnnzoo.errors import UserError
from test_display import run_cells  # the one way this suite runs cells in a fresh kernel

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

DATA = "synthetic:classes=4,n=64,size=16"
TINY = dict(model="resnet18", model_args={"width_mult": 0.25}, data=DATA, epochs=2, batch_size=16, device="cpu",
            threads=1)
MODELS = ["mobilenet_v1:width_mult=0.25", "resnet18:width_mult=0.25"]
FAST_COMPARE = dict(data=DATA, epochs=1, batch_size=16, device="cpu", threads=1,
                    latency=LatencySettings(repeats=2, warmup=1, batch_repeats=1))


def _pngs(markup: str) -> list[Image.Image]:
    found = re.findall(r'src="data:image/png;base64,([^"]+)"', markup)
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in found]


def _rows(markup: str, caption: str = "") -> int:
    """The body rows of the first table (after ``caption``, when given)."""
    table = markup[markup.index(caption):] if caption else markup
    body = table[table.index("<tbody>"):table.index("</tbody>")]
    return body.count("<tr>")


# ----------------------------------------------------------------------------- plain Python

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return cnnzoo.train(**TINY, out_dir=str(tmp_path_factory.mktemp("run") / "run"), progress=False)


def test_train_result_repr_is_its_key_figures(run):
    text = repr(run)
    assert text.startswith("TrainResult(model: resnet18(") and "\n" not in text
    assert f"best epoch: {run.best_epoch}" in text and f"epochs: {len(run.history)} of 2" in text
    assert f"best val acc: {100 * run.best_val_acc:.2f} %" in text and run.out_dir in text
    assert len(text) < 400  # not the dataclass's dump of the model and every epoch record


def test_train_result_html_has_the_figures_and_the_curves_inline(run):
    out = run._repr_html_()
    assert html.escape(f"{100 * run.best_val_acc:.2f} %") in out and "best epoch" in out
    (curves,) = _pngs(out)
    assert curves.width > 1.5 * curves.height  # loss and accuracy side by side
    stored = Image.open(f"{run.out_dir}/curves.png")  # the run folder's file is the same drawing
    assert stored.format == "PNG" and stored.width > 1.5 * stored.height


@pytest.fixture(scope="module")
def scored(run):
    return cnnzoo.evaluate(f"{run.out_dir}/best.pt")


def test_eval_result_html_has_accuracy_per_class_and_confusion_matrix(scored):
    out = scored._repr_html_()
    assert html.escape(f"{100 * scored.accuracy:.2f} %") in out
    assert _rows(out, "Per class") == len(scored.class_names)
    assert all(f">{name}<" in out for name in scored.class_names)
    assert len(_pngs(out)) == 1  # the confusion matrix
    assert repr(scored).startswith("EvalResult(accuracy: ") and "confusion" not in repr(scored)


def test_eval_result_shows_its_most_confident_mistakes(scored):
    wrong = np.flatnonzero(scored.predicted != scored.labels)
    grid = scored.show_mistakes(k=3)
    assert len(grid.images) == len(grid.titles) == min(3, len(wrong))
    if len(wrong):
        first = wrong[np.argmax(scored.confidence[wrong])]
        assert grid.titles[0].startswith(f"{scored.class_names[scored.labels[first]]} -> "
                                         f"{scored.class_names[scored.predicted[first]]}")
        np.testing.assert_array_equal(grid.images[0], scored.images[first])
    assert Image.open(io.BytesIO(grid._repr_png_())).format == "PNG"


def test_mistakes_need_the_evaluated_images(scored):
    with pytest.raises(UserError, match="evaluate the checkpoint again"):
        dataclasses.replace(scored, images=None).show_mistakes()


# ----------------------------------------------------------------------------- in a Jupyter kernel

@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """The cells run in one fresh kernel, and the folder their runs were written to."""
    tmp = tmp_path_factory.mktemp("kernel")
    with pytest.MonkeyPatch.context() as mp:
        return run_cells([
            "import cnnzoo\nfrom cnnzoo.compare import LatencySettings, compare",
            f"run = cnnzoo.train(**{TINY!r}, out_dir={str(tmp / 'run')!r}, progress=False)\nrun",
            "scored = cnnzoo.evaluate(run.out_dir + '/best.pt')\nscored",
            "scored.show_mistakes(4)",
            "import sys\n'matplotlib.pyplot' in sys.modules",
            f"cmp = compare({MODELS!r}, out_dir={str(tmp / 'cmp')!r}, log=lambda line: None, "
            + ", ".join(f"{k}={v!r}" for k, v in FAST_COMPARE.items()) + ")",
            "cmp",
            "import matplotlib\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\nmatplotlib.get_backend()",
        ], tmp, mp, timeout=180), tmp


def _result(cell) -> dict:
    (shown,) = [o for o in cell.outputs if o.output_type == "execute_result"]
    return shown.data


@pytest.fixture(scope="module")
def cells(kernel):
    return kernel[0]


def test_kernel_shows_train_result_as_html_and_text(cells):
    data = _result(cells[1])
    assert "<table" in data["text/html"] and len(_pngs(data["text/html"])) == 1
    assert data["text/plain"].startswith("TrainResult(model: resnet18(")
    # progress=False: no bar and no live curves, only the result the cell ends with
    assert [o.output_type for o in cells[1].outputs] == ["execute_result"]


def test_training_and_evaluating_never_touch_pyplot(cells):
    # Figures are drawn outside pyplot, so the learner's matplotlib backend and state are left alone.
    assert _result(cells[4])["text/plain"] == "False"


def test_kernel_shows_eval_result_and_its_mistakes(cells):
    data = _result(cells[2])
    assert "Per class" in data["text/html"] and len(_pngs(data["text/html"])) == 1
    assert data["text/plain"].startswith("EvalResult(accuracy: ")
    assert "image/png" in _result(cells[3])


def test_kernel_compare_grows_one_table_and_redraws_one_figure(cells):
    shown = [o for o in cells[5].outputs if o.output_type == "display_data"]
    tables = [o for o in shown if "text/html" in o.data]
    figures = [o for o in shown if "image/png" in o.data]
    # nbclient applies each update to the output it names: one table (both models by now), one figure
    assert len(tables) == 1 and _rows(tables[0].data["text/html"]) == len(MODELS)
    assert len(figures) == 1


def test_kernel_shows_the_comparison_results_verdict_and_plots(kernel):
    cells, folder = kernel
    out = _result(cells[6])["text/html"]
    records = json.loads((folder / "cmp" / "results.json").read_text())["models"]
    assert _rows(out[out.index("</table>"):]) == len(MODELS)  # the results table, after the key figures
    assert all(html.escape(name) in out for name in MODELS)
    assert all(html.escape(sentence) in out for sentence in verdict(records))
    assert len(_pngs(out)) == len(list(folder.glob("cmp/plots/accuracy_vs_*.png"))) > 0
    assert _result(cells[6])["text/plain"].startswith("Comparison(2 of 2 models finished on")


def test_drawing_leaves_the_notebooks_matplotlib_alone(cells):
    # After training, evaluating and comparing, the learner's own plt.plot(...) still shows in its cell.
    assert "inline" in _result(cells[7])["text/plain"]
    assert any("image/png" in o.get("data", {}) for o in cells[7].outputs)
