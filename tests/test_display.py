"""How objects show themselves: plain Python here, then in a real Jupyter kernel (nbclient + ipykernel),
reading the display outputs a notebook would render."""
import argparse
import base64
import io
import sys

import numpy as np
import pytest
from PIL import Image

import cnnzoo
from cnnzoo import display
from cnnzoo.data import show_batch, show_mistakes
from cnnzoo.errors import UserError

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

DATA = "synthetic:classes=4,n=64,size=16"
# The course's CIFAR-10 MobileNet (seeds/004): alpha 0.5, 32x32x3, 10 classes; Keras' model.summary()
# total there is 834,666 (batch-norm moving statistics counted as non-trainable weights).
TRAIN_TINY = ("model='resnet18', model_args={'width_mult': 0.25}, data=%r, epochs=2, batch_size=16, device='cpu', "
              "threads=1" % DATA)
COURSE_MOBILENET = "cnnzoo.summary('mobilenet_v1', (3, 32, 32), keras=True, width_mult=0.5, num_classes=10)"


# ----------------------------------------------------------------------------- plain Python

def test_html_table_escapes_every_cell():
    out = display.html_table([("<script>", "a & b")], ("x<y", "z"), align="lr")
    assert "<script>" not in out and "&lt;script&gt;" in out and "a &amp; b" in out and "x&lt;y" in out
    assert 'style="text-align:right">a &amp; b' in out


def test_outside_a_kernel_no_notebook_no_bar_no_live_curves(monkeypatch):
    assert not display.in_notebook()
    assert display.progress_bar(10, progress=False) is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert display.progress_bar(10) is None  # a redirected log: the caller prints its lines instead
    curves = display.LiveCurves()
    curves(object())  # a no-op outside a kernel: it never touches the record
    assert curves.history == []


def test_audio_player_holds_a_wav():
    out = display.audio_html(np.sin(np.linspace(0, 100, 800)), 8000)
    assert out.startswith("<audio controls")
    wav = base64.b64decode(out.split("base64,")[1].split('"')[0])
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"


def test_report_puts_facts_tables_and_figures_in_one_block():
    fig = display.new_figure(2, 2)
    fig.add_subplot().plot([0, 1], [1, 0])
    out = display.report_html("run <1>", {"best epoch": 3}, tables=[display.html_table([(1,)])], figures=[fig])
    assert "run &lt;1&gt;" in out and "best epoch" in out and out.count("<table") == 2
    assert out.count('<img src="data:image/png;base64,') == 1


def test_summary_repr_is_the_table_and_html_holds_it():
    s = cnnzoo.summary("mobilenet_v1", (3, 32, 32), keras=True, width_mult=0.5, num_classes=10)
    assert repr(s) == str(s)
    assert "Total params: 834,666" in repr(s)
    html = s._repr_html_()
    assert "<table" in html and "Layer (type)" in html and "Total params: 834,666" in html
    assert html.count("<tr>") == len(s.rows) + 1  # header and one per layer


def test_show_batch_draws_the_loaders_batch_denormalised():
    grid = show_batch(DATA, augment="none", n=6, seed=3)
    from cnnzoo.data import BatchLoader, load_dataset
    splits = load_dataset(DATA, seed=3, progress=False)
    x, y = next(iter(BatchLoader(splits.train, 6, shuffle=True, augment="none", seed=3)))  # no normalisation
    np.testing.assert_array_equal(grid.images, np.rint(x.numpy() * 255).astype(np.uint8))
    assert grid.titles == [splits.class_names[i] for i in y]
    picture = Image.open(io.BytesIO(grid._repr_png_()))
    assert picture.format == "PNG" and picture.width > 100


def test_show_batch_and_mistakes_refuse_bad_input():
    with pytest.raises(UserError, match="augmentation"):
        show_batch(DATA, augment="sideways")
    with pytest.raises(UserError, match="at least 1"):
        show_batch(DATA, n=0)
    result = argparse.Namespace(labels=np.array([0, 1, 1]), predicted=np.array([1, 1, 0]),
                                confidence=np.array([0.6, 0.9, 0.8]), class_names=["a", "b"])
    images = np.zeros((3, 3, 8, 8), np.uint8)
    with pytest.raises(UserError, match="evaluation of 3"):
        show_mistakes(result, images[:2])
    grid = show_mistakes(result, images, k=5)
    assert grid.titles == ["b -> a\n(80%)", "a -> b\n(60%)"]  # most confident first, right ones left out


def test_show_batch_command_writes_the_grid(tmp_path):
    from cnnzoo.cli import show_batch_cmd
    parser = argparse.ArgumentParser()
    show_batch_cmd.add_arguments(parser)
    out = tmp_path / "grid.png"
    assert show_batch_cmd.run(parser.parse_args(["--data", DATA, "--n", "4", "--out", str(out)])) == 0
    assert Image.open(out).format == "PNG"


# ----------------------------------------------------------------------------- in a Jupyter kernel

def run_cells(sources, tmp_path, monkeypatch, timeout=120):
    """Execute ``sources`` as the cells of a notebook in a fresh kernel; the executed cells."""
    monkeypatch.setenv("CNNZOO_CACHE", str(tmp_path / "cache"))  # the kernel inherits the environment
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=timeout,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb.cells


def outputs(cell, output_type="execute_result"):
    return [o for o in cell.outputs if o.output_type == output_type]


@pytest.fixture(scope="module")
def kernel_cells(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kernel")
    with pytest.MonkeyPatch.context() as mp:
        return run_cells([
            "import cnnzoo\nfrom cnnzoo import display\ndisplay.in_notebook()",
            COURSE_MOBILENET,
            f"cnnzoo.show_batch({DATA!r}, augment='light', n=6, columns=3)",
            f"result = cnnzoo.train({TRAIN_TINY}, out_dir={str(tmp / 'run')!r}, on_epoch_end=display.LiveCurves())",
            "table = display.LiveOutput()\nfor n in (1, 2, 3):\n"
            "    table.show(display.html_table([(i, i * i) for i in range(n)], ('model', 'score')))",
        ], tmp, mp)


def test_kernel_is_seen_as_a_notebook(kernel_cells):
    assert outputs(kernel_cells[0])[0].data["text/plain"] == "True"


def test_summary_in_a_kernel_shows_the_html_table_and_the_text_table(kernel_cells):
    data = outputs(kernel_cells[1])[0].data
    assert "<table" in data["text/html"] and "Total params: 834,666" in data["text/html"]
    assert data["text/plain"].startswith('Model: "mobilenet_v1"')
    assert "Layer (type)" in data["text/plain"] and "Total params: 834,666" in data["text/plain"]


def test_show_batch_in_a_kernel_is_an_image_of_the_asked_tiles(kernel_cells):
    data = outputs(kernel_cells[2])[0].data
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).convert("HSV"))
    # The synthetic images are vividly coloured, titles and margins grey: count the coloured bands.
    coloured = picture[..., 1] > 60
    assert (_runs(coloured.any(axis=0)), _runs(coloured.any(axis=1))) == (3, 2)  # 6 tiles, 3 columns


def _runs(mask: np.ndarray) -> int:
    return int(np.sum(mask[1:] & ~mask[:-1]) + mask[0])


def test_live_curves_redraw_one_figure_in_place(kernel_cells):
    # nbclient applies a display update to the output it names, as a notebook page does: two epochs
    # leave one figure (the second drawing), not two.
    images = [o for o in kernel_cells[3].outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1 and images[0].output_type == "display_data"
    picture = Image.open(io.BytesIO(base64.b64decode(images[0].data["image/png"])))
    assert picture.width > 1.5 * picture.height  # loss and accuracy side by side


def test_a_live_table_grows_in_one_output(kernel_cells):
    shown = [o for o in kernel_cells[4].outputs if "text/html" in o.get("data", {})]
    assert len(shown) == 1 and shown[0].data["text/html"].count("<tr>") == 4  # header + the last 3 rows


def test_training_in_a_kernel_shows_progress_and_live_curves(tmp_path, monkeypatch):
    cells = run_cells([
        f"import cnnzoo\nresult = cnnzoo.train({TRAIN_TINY}, out_dir={str(tmp_path / 'run')!r})",
    ], tmp_path, monkeypatch)
    shown = cells[0].outputs
    widget = "application/vnd.jupyter.widget-view+json"
    bars = [o for o in shown if o.output_type == "display_data" and widget in o.data]
    text_bars = [o for o in shown if o.output_type == "stream" and o.name == "stderr" and "epoch 1/2" in o.text]
    images = [o for o in shown if o.output_type in ("display_data", "update_display_data") and "image/png" in o.data]
    assert bars or text_bars
    assert images
