"""gdbench.records.formats: every number format and every document format, exactly as a
reader gets them (the tables of compare, check and audit are built from these)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from gdbench.records import formats


@pytest.mark.parametrize(("value", "text"), [
    (0.018, "0.0180"), (3.0, "3.00"), (12.34, "12.3"), (456.0, "456"), (4560.4, "4,560"),
    (-12.34, "-12.3"), (0.0, "0"), (math.inf, "inf"), (math.nan, ""), (None, ""),
    (99.96, "100.0"),  # rounded after the digits were chosen: four of them
])
def test_number_keeps_about_three_significant_digits(value: float, text: str) -> None:
    assert formats.number(value) == text
    assert formats.us(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (1.25, "×1.25"), (12.0, "×12.0"), (math.nan, ""), (None, "")])
def test_times(value: float, text: str) -> None:
    assert formats.times(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (10.0, "10%"), (55.4, "55%"), (9.99, "10%"), (9.5, "9.5%"), (0.123, "0.12%"),
    (math.nan, "")])
def test_percent(value: float, text: str) -> None:
    assert formats.percent(value) == text


@pytest.mark.parametrize(("spread", "text"), [
    (0.021, "±2.1%"), (0.0043, "±0.43%"), (0.25, "±25%"), (0.1, "±10%"), (0.0999, "±10%"),
    (0.99, "±99%"),
    (0.0, "±0%"), (math.nan, ""), (None, "")])
def test_plus_minus(spread: float, text: str) -> None:
    assert formats.plus_minus(spread) == text


def test_with_interval_adds_the_reach_only_to_a_figure_that_has_one() -> None:
    assert formats.with_interval("99.3", 0.021) == "99.3 ±2.1%"
    assert formats.with_interval("99.3", math.nan) == "99.3"
    assert formats.with_interval("", 0.021) == ""


@pytest.mark.parametrize(("ratio", "text"), [
    (1.253, "+25.3%"), (0.8, "-20.0%"), (1.0, "+0.0%"), (math.nan, "")])
def test_signed_percent(ratio: float, text: str) -> None:
    assert formats.signed_percent(ratio) == text


TABLE = pd.DataFrame({"backend": ["numpy", "jax|x"], "µs/step": ["12.3", "4,560"],
                      "speed-up": ["×1.00", None], "note": [math.nan, "(1)"]})


def test_plain_aligns_numbers_right_and_text_left() -> None:
    assert formats.plain(TABLE).splitlines() == [
        "backend  µs/step  speed-up  note",
        "numpy       12.3     ×1.00",
        "jax|x      4,560             (1)",
    ]


def test_a_column_is_numeric_when_every_filled_cell_starts_like_a_number() -> None:
    rows = [["+1", "(2)", "[3", "-4", "×5", "a", ""], ["", "6", "7", "8", "9", "1", ""]]
    assert [formats._numeric(rows, j) for j in range(7)] == [
        True, True, True, True, True, False, False]  # an empty column is text


def test_markdown_escapes_pipes_and_aligns_by_column() -> None:
    assert formats.markdown(TABLE).splitlines() == [
        "| backend | µs/step | speed-up | note |",
        "|:---|---:|---:|---:|",
        "| numpy | 12.3 | ×1.00 |  |",
        "| jax\\|x | 4,560 |  | (1) |",
    ]


SECTIONS = [formats.Section("First", TABLE.iloc[:1], ["a note"], ["* a footnote"]),
            formats.Section("Second <b>", TABLE.iloc[1:])]


def test_a_plain_document_has_underlined_titles_and_warnings_first() -> None:
    text = formats.render(SECTIONS, "table", ["slow & noisy"])
    assert text == (
        "!! WARNING: slow & noisy\n\n"
        "First\n=====\na note\nbackend  µs/step  speed-up  note\nnumpy       12.3     ×1.00\n"
        "* a footnote\n\n"
        "Second <b>\n==========\nbackend  µs/step  speed-up  note\n"
        "jax|x      4,560             (1)\n")


def test_a_markdown_document_quotes_the_warnings_and_spaces_its_blocks() -> None:
    text = formats.render(SECTIONS, "md", ["slow"])
    assert text == (
        "> **⚠ slow**\n\n### First\n\na note\n\n"
        "| backend | µs/step | speed-up | note |\n|:---|---:|---:|:---|\n"
        "| numpy | 12.3 | ×1.00 |  |\n\n* a footnote\n\n"
        "### Second <b>\n\n| backend | µs/step | speed-up | note |\n|:---|---:|:---|---:|\n"
        "| jax\\|x | 4,560 |  | (1) |\n")


def test_an_html_document_escapes_every_text() -> None:
    text = formats.render(SECTIONS, "html", ["slow & noisy"])
    lines = text.splitlines()
    assert lines[0] == '<p style="color:#b00"><strong>⚠ slow &amp; noisy</strong></p>'
    assert lines[1] == "<h3>First</h3>" and lines[2] == "<p>a note</p>"
    assert "<p>* a footnote</p>" in lines and "<h3>Second &lt;b&gt;</h3>" in lines
    assert text.count("<table") == 2 and text.endswith("</table>\n")
    assert "<td>jax|x</td>" in text


def test_an_unknown_document_format_is_named() -> None:
    with pytest.raises(ValueError) as refused:
        formats.render(SECTIONS, "csv")
    assert str(refused.value) == "unknown format 'csv'; expected one of table, md, html"


def test_an_html_table_has_no_index_no_border_and_escaped_cells() -> None:
    table = pd.DataFrame({"backend": ["a<b"], "µs/step": ["1.00"]})
    text = formats.render([formats.Section("T", table)], "html")
    assert '<table class="dataframe">' in text  # border 0: no border attribute
    assert "<td>a&lt;b</td>" in text and "<th>backend</th>" in text
    assert text.count("<th>") == 2  # the two columns' headers, no index column


def test_csv_has_no_index_and_six_significant_digits() -> None:
    frame = pd.DataFrame({"a": [1.23456789, 2.0], "b": ["x", "y"]})
    assert formats.csv(frame) == "a,b\n1.23457,x\n2,y\n"
