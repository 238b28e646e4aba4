"""Inline SVG charts: gaps stay gaps, flat lines stay visible, labels are escaped."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

from reelbench.report.svg import Series, _fmt, line_chart

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def test_missing_values_split_the_line() -> None:
    svg = parse(line_chart("m", [Series("a", "#000", [None, 1.0, 2.0, None, 3.0, 4.0, 5.0])]))
    lines = svg.findall(f"{NS}polyline")
    assert [len(p.attrib["points"].split()) for p in lines] == [2, 3]


def test_a_lone_value_between_gaps_is_a_dot() -> None:
    svg = parse(line_chart("m", [Series("a", "#000", [1.0, None, 2.0, None, 3.0, 4.0])]))
    assert len(svg.findall(f"{NS}circle")) == 2  # 1.0 and 2.0 stand alone
    assert len(svg.findall(f"{NS}polyline")) == 1


def test_infinite_values_are_gaps_not_axis_limits() -> None:
    svg = line_chart("psnr", [Series("a", "#000", [30.0, math.inf, 40.0])])
    assert "inf" not in svg
    assert ">40<" in svg and ">30<" in svg


def test_flat_series_is_drawn_inside_the_frame() -> None:
    svg = parse(line_chart("m", [Series("a", "#000", [5.0, 5.0, 5.0])]))
    (line,) = svg.findall(f"{NS}polyline")
    ys = {float(p.split(",")[1]) for p in line.attrib["points"].split()}
    assert len(ys) == 1
    assert 16 < ys.pop() < 110 - 16


def test_no_data_says_so() -> None:
    assert "no data" in line_chart("m", [Series("a", "#000", [None, None])])


def test_labels_and_titles_are_escaped() -> None:
    svg = line_chart('<b>"x"</b>', [Series("<script>", "#000", [1.0, 2.0])])
    parse(svg)
    assert "<script>" not in svg and "<b>" not in svg
    assert "&lt;script&gt;" in svg


def test_axis_numbers_are_short() -> None:
    assert [_fmt(v) for v in (0, 0.005, 0.156, 77.7, 1480, 123456)] == [
        "0", "5.0e-03", "0.156", "77.7", "1480", "1.2e+05",
    ]  # fmt: skip
    assert all(len(_fmt(v)) <= 7 for v in (-0.0123, -98765.0, 1e-9, 12345.6))
    assert not re.search(r"e\+0[0-4]", _fmt(9999.0))
