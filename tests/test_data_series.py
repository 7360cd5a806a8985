"""CSV time series: columns by name, the step column, splitting in time, and refusing bad cells."""
import numpy as np
import pytest
import torch

from cnnzoo.data.series import read_series_csv
from cnnzoo.data.splits import DataError
from cnnzoo.data.windows import WindowLoader
from cnnzoo.errors import UserError


def write_csv(tmp_path, text: str, name: str = "series.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def monthly(n: int = 60) -> str:
    rows = [f"{2000 + i // 12}-{i % 12 + 1:02d},{10 + i},{100 - 2 * i:.1f}" for i in range(n)]
    return "date,sales,stock\n" + "\n".join(rows) + "\n"


def test_a_column_by_name_with_the_date_column_found(tmp_path):
    series = read_series_csv(write_csv(tmp_path, monthly()), columns="sales")
    assert series.columns == ["sales"] and series.step_column == "date"
    assert series.values.shape == (1, 60) and series.values.dtype == np.float32
    assert series.values[0, :3].tolist() == [10, 11, 12] and series.steps[:2] == ["2000-01", "2000-02"]


def test_several_columns_make_a_multivariate_series(tmp_path):
    series = read_series_csv(write_csv(tmp_path, monthly()), columns=["stock", "sales"])
    assert series.columns == ["stock", "sales"] and series.values.shape == (2, 60)
    assert series.values[:, 0].tolist() == [100, 10]


def test_the_only_value_column_needs_no_name_and_other_delimiters_are_read(tmp_path):
    series = read_series_csv(write_csv(tmp_path, "YEAR;SUNACTIVITY\n1700;5\n1701;11\n1702;16\n"))
    assert series.columns == ["SUNACTIVITY"] and series.step_column == "YEAR"
    assert series.values.tolist() == [[5, 11, 16]]
    bare = read_series_csv(write_csv(tmp_path, "level\n1.5\n2.5\n\n", name="bare.csv"))  # no step, a blank line
    assert bare.values.tolist() == [[1.5, 2.5]] and bare.steps is None


def test_validation_is_the_end_of_the_series_standardised_by_the_training_part(tmp_path):
    series = read_series_csv(write_csv(tmp_path, monthly()), columns=["sales", "stock"])
    splits = series.split(val_fraction=0.25)
    assert splits.boundary == 45
    train, val = splits.train.signals[0], splits.val.signals[0]
    assert train.shape == (2, 45) and val.shape == (2, 15)
    np.testing.assert_allclose(train.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(train.std(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(splits.restore(val), series.values[:, 45:], rtol=1e-5)  # nothing shuffled
    restored = splits.restore(torch.from_numpy(val))
    assert isinstance(restored, torch.Tensor)
    np.testing.assert_allclose(restored.numpy(), series.values[:, 45:], rtol=1e-5)
    np.testing.assert_allclose(splits.standardise(series.values[:, 45:]), val, atol=1e-5)
    assert series.split(val_steps=12).boundary == 48
    loader = WindowLoader(splits.train, window=8, batch_size=4, target="continuous")
    x, y = next(iter(loader))
    assert x.shape == (4, 2, 8)


@pytest.mark.parametrize("text, expected", [
    ("date,sales\n2000-01,10\n2000-02,\n2000-03,12\n", r"series\.csv: row 3, column 'sales': empty \(a gap"),
    ("date,sales\n2000-01,10\n2000-02,12\n2000-03,n/a\n", r"row 4, column 'sales': 'n/a' is not a number"),
    ("date,sales\n2000-01,10\n2000-02\n", r"row 3, column 'sales': empty"),
    ("date,sales\n2000-01,10\n2000-02,nan\n", r"row 3, column 'sales': 'nan' is not a finite number"),
])
def test_gaps_and_text_are_refused_naming_file_row_and_column(tmp_path, text, expected):
    with pytest.raises(DataError, match=expected):
        read_series_csv(write_csv(tmp_path, text), columns="sales")


def test_every_bad_cell_is_counted(tmp_path):
    rows = "\n".join(f"{i},x" for i in range(12))
    with pytest.raises(DataError, match=r"row 2, column 'v'.*row 6, column 'v'.*\(and 7 more\)"):
        read_series_csv(write_csv(tmp_path, "step,v\n" + rows + "\n"), columns="v")


def test_columns_that_do_not_exist_or_are_ambiguous(tmp_path):
    path = write_csv(tmp_path, monthly())
    with pytest.raises(UserError, match=r"no column 'sale' \(did you mean 'sales'"):
        read_series_csv(path, columns="sale")
    with pytest.raises(DataError, match="2 columns besides the step column .*sales, stock"):
        read_series_csv(path)
    with pytest.raises(DataError, match="no column 'when'"):
        read_series_csv(path, columns="sales", step_column="when")
    with pytest.raises(DataError, match="cannot read"):
        read_series_csv(tmp_path / "missing.csv", columns="sales")
    with pytest.raises(DataError, match="empty"):
        read_series_csv(write_csv(tmp_path, "", name="empty.csv"))
    with pytest.raises(DataError, match="1 data row"):
        read_series_csv(write_csv(tmp_path, "v\n1\n", name="short.csv"))
