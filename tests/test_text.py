"""The one table renderer and the number formatters every report and command uses."""
import math

import pytest

from cnnzoo.text import format_count, format_percent, table


@pytest.mark.parametrize("n,expected", [
    (0, "0"), (999, "999"), (1000, "1.00K"), (712_629, "712.63K"), (1.5e6, "1.50M"), (2.3e9, "2.30G"),
    (4e12, "4.00T"), (-2500, "-2.50K"),
    (999_999, "1.00M"),     # rounds up into the next suffix, never '1000.00K'
    (999.7, "1.00K"),       # likewise below the first suffix
])
def test_format_count(n, expected):
    assert format_count(n) == expected


def test_format_count_digits_and_missing_values():
    assert format_count(64e6, digits=0) == "64M" and format_count(1.5e6, digits=1) == "1.5M"
    assert format_count(None) == format_count(math.nan) == format_count(math.inf) == "-"


def test_format_percent_has_no_sign_and_marks_missing():
    assert format_percent(0.945) == "94.5" and format_percent(0.123, 0) == "12" and format_percent(1) == "100.0"
    assert format_percent(None) == format_percent(math.nan) == "-"


def test_text_table_aligns_text_left_numbers_right_and_underlines_headers():
    out = table([("resnet18", 11_689_512), ("mobilenet_v2", 3_504_872)], ("model", "params"), "lr")
    assert out.splitlines() == [
        "model           params",
        "-----           ------",
        "resnet18      11689512",
        "mobilenet_v2   3504872",
    ]


def test_text_table_without_headers_has_no_rule_and_no_trailing_spaces():
    out = table([("a", "long text"), ("bbb", "")])
    assert out.splitlines() == ["a    long text", "bbb"]


def test_markdown_table_is_padded_with_a_colon_rule_for_numbers():
    out = table([("big", "4.00G"), ("mid|x", "300.00M")], ("model", "MACs"), "lr", markdown=True)
    assert out.splitlines() == [
        "| model  |    MACs |",
        "|--------|--------:|",
        "| big    |   4.00G |",
        r"| mid\|x | 300.00M |",   # a pipe in a cell would end the cell
    ]


def test_unpadded_markdown_table():
    out = table([("0.25", "32")], ("width_mult", "resolution"), "rl", markdown=True, pad=False)
    assert out.splitlines() == ["| width_mult | resolution |", "|---:|---|", "| 0.25 | 32 |"]


def test_table_rejects_bad_arguments():
    with pytest.raises(ValueError, match="headers"):
        table([("a",)], markdown=True)
    with pytest.raises(ValueError, match="align"):
        table([("a",)], align="c")
