"""XLSX for people: formula-injection safe, readable (CJK widths, bold frozen header)."""
from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import pytest

from vbp_monitor.outputs.spreadsheets import safe_cell, write_xlsx, xlsx_bytes


@pytest.mark.parametrize("text", [
    "=1+1", '=HYPERLINK("http://evil.example","点击")', "+8613800000000", "-5", "@SUM(A1)",
    "\t=1+1", "\r=1+1",
])
def test_text_that_would_start_a_formula_gets_an_apostrophe(text):
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("value", [
    "第一人民医院", "", "H1", "a=b", "50%", 0, 7, 1.5, -3, True, None,
    dt.date(2025, 2, 28), dt.datetime(2025, 3, 3, 6, 0),
])
def test_other_values_are_untouched(value):
    assert safe_cell(value) == value


def test_decimal_time_zone_and_control_characters():
    assert safe_cell(Decimal("0.315600")) == pytest.approx(0.3156)
    assert isinstance(safe_cell(Decimal("-12.5")), float)  # a negative number stays a number
    aware = dt.datetime(2025, 3, 2, 22, 0, tzinfo=dt.timezone.utc)
    assert safe_cell(aware) == dt.datetime(2025, 3, 3, 6, 0)  # Asia/Shanghai, naive
    assert safe_cell("医院\x00\x07名称") == "医院名称"
    assert safe_cell(Path("orders.csv")) == "orders.csv"
    assert safe_cell(float("nan")) == "nan"


def test_write_and_read_back(tmp_path):
    from openpyxl import load_workbook

    header = ["医疗机构", "指标值", "日期", "说明"]
    rows = [
        ["第一人民医院", Decimal("0.24"), dt.date(2025, 2, 28), "完成率低于序时进度"],
        ['=HYPERLINK("http://evil.example","x")', 3, dt.datetime(2025, 3, 3, 6, 0), "#N/A"],
        ["H9", None, None, "-1"],
    ]
    path = write_xlsx(tmp_path / "out" / "预警.xlsx", {"预警明细": (header, rows), "a/b:c": (["x"], [])})
    assert path.exists()

    workbook = load_workbook(path)
    assert workbook.sheetnames == ["预警明细", "a_b_c"]
    sheet = workbook["预警明细"]
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0] == header
    assert values[1] == ["第一人民医院", 0.24, dt.datetime(2025, 2, 28), "完成率低于序时进度"]
    assert values[2] == ["'=HYPERLINK(\"http://evil.example\",\"x\")", 3, dt.datetime(2025, 3, 3, 6, 0), "#N/A"]
    assert values[3] == ["H9", None, None, "'-1"]
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)
    assert sheet["D3"].data_type == "s"  # "#N/A" is text, not an error value
    assert all(cell.font.bold for cell in sheet[1])
    assert sheet.freeze_panes == "A2"
    # CJK text is twice as wide as ASCII of the same length
    assert sheet.column_dimensions["D"].width > sheet.column_dimensions["B"].width
    assert sheet.column_dimensions["A"].width <= 60


def test_xlsx_bytes_is_the_same_workbook():
    from openpyxl import load_workbook

    content = xlsx_bytes({"汇总": (["分局", "合计"], [["章贡分局", 12]])})
    sheet = load_workbook(io.BytesIO(content))["汇总"]
    assert [list(r) for r in sheet.iter_rows(values_only=True)] == [["分局", "合计"], ["章贡分局", 12]]
