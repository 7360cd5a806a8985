"""The verdict of a results.json whose finished models lack a number the runner always writes (a file
from an older version, or edited by hand): sentences, not a crash. Both were found by mypy."""
from cnnzoo.compare import verdict


def test_a_recommendation_against_a_best_model_without_macs_says_they_are_unknown():
    records = [dict(name="a", status="done", best_val_acc=0.90, val_images=100),
               dict(name="b", status="done", best_val_acc=0.895, macs=1000, val_images=100)]
    lines = verdict(records)
    assert any(line.startswith("Recommended: b") and "a, whose MACs are not known" in line for line in lines), lines


def test_finished_models_without_an_accuracy_are_not_compared():
    lines = verdict([dict(name="a", status="done", macs=1000),
                     dict(name="b", status="failed", reason="out of memory")])
    assert lines == ["No finished model has a validation accuracy, so there is nothing to compare yet.",
                     "b: failed - out of memory."]


def test_plots_draw_a_model_at_100_percent_whose_interval_ends_there():
    # Wilson's upper end at 100 % is 0.9999999999999999 in floating point: the error bar's length
    # above the point came out negative and matplotlib refused it (found with one epoch on synthetic data)
    from cnnzoo.compare.plots import render_plots

    records = [dict(name="a", status="done", best_val_acc=1.0, val_images=104, macs=1000, params=10,
                    history=[dict(epoch=1, val_acc=1.0, elapsed_s=1.0)]),
               dict(name="b", status="done", best_val_acc=0.0, val_images=104, macs=2000, params=20,
                    history=[dict(epoch=1, val_acc=0.0, elapsed_s=1.0)])]
    plots = render_plots(records)
    assert plots["accuracy_vs_macs"].startswith(b"\x89PNG")
