"""The verdict of a results.json whose finished models lack a number the runner always writes (a file
from an older version, or edited by hand): sentences, not a crash. Both were found by mypy."""
from cnnzoo.compare import verdict


def test_a_trade_off_against_a_best_model_without_macs_says_they_are_unknown():
    records = [dict(name="a", status="done", best_val_acc=0.90, val_images=100),
               dict(name="b", status="done", best_val_acc=0.895, macs=1000, val_images=100)]
    lines = verdict(records)
    assert any(line.startswith("Best trade-off: b") and "a's are not known" in line for line in lines), lines


def test_finished_models_without_an_accuracy_are_not_compared():
    lines = verdict([dict(name="a", status="done", macs=1000),
                     dict(name="b", status="failed", reason="out of memory")])
    assert lines == ["No finished model has a validation accuracy, so there is nothing to compare yet.",
                     "b: failed - out of memory."]
