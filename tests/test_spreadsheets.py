"""XLSX for people: formula-injection safe, readable (CJK widths, bold frozen header)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from vbp_monitor.outputs.spreadsheets import safe_cell, write_branch_files, write_xlsx


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
    aware = dt.datetime(2025, 3, 2, 22, 0, tzinfo=dt.UTC)
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


SHEETS = {"清单": (["分局", "合计"], [["章贡分局", 12]])}


def _names(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def test_write_branch_files_removes_a_reruns_stale_files_within_the_scope(tmp_path):
    folder = tmp_path / "vbp_entry_sweep" / "2025-02"
    written = write_branch_files(folder, "进院排查", "2025-02", {"B1": SHEETS, "B2": SHEETS})
    assert written == {"B1": [folder / "进院排查_B1_2025-02.xlsx"], "B2": [folder / "进院排查_B2_2025-02.xlsx"]}
    other_period = write_xlsx(folder / "进院排查_B2_2025-01.xlsx", SHEETS)
    unrelated = write_xlsx(folder / "执行报表_B2_2025-02.xlsx", SHEETS)

    # an operator's rerun for B1 only, which still lists B1: B2's file is outside the scope
    assert write_branch_files(folder, "进院排查", "2025-02", {"B1": SHEETS}, scope_branch="B1") == {
        "B1": [folder / "进院排查_B1_2025-02.xlsx"]}
    assert _names(folder) == {"进院排查_B1_2025-02.xlsx", "进院排查_B2_2025-02.xlsx",
                              other_period.name, unrelated.name}

    # a full rerun after corrections: B2 has nothing left to list, its old file goes
    write_branch_files(folder, "进院排查", "2025-02", {"B1": SHEETS})
    assert _names(folder) == {"进院排查_B1_2025-02.xlsx", other_period.name, unrelated.name}

    # a scoped rerun whose branch has nothing left removes that branch's file only
    assert write_branch_files(folder, "进院排查", "2025-02", {}, scope_branch="B1") == {}
    assert _names(folder) == {other_period.name, unrelated.name}


@pytest.mark.parametrize("branch_code", [
    "360722/../../x", "../../../etc/passwd", "/tmp/abs", "B1\r\nBcc: x", "B1\n", "..", "a\\..\\b",
])
def test_a_branch_code_never_writes_outside_the_folder(tmp_path, branch_code):
    folder = tmp_path / "out" / "2025-02"
    (path,) = write_branch_files(folder, "进院排查", "2025-02", {branch_code: SHEETS})[branch_code]
    assert path.parent == folder and path.is_file()
    assert not any(character in path.name for character in "/\\\r\n") and ".." not in path.name
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [path]
    # and a rerun that no longer lists it removes exactly that file
    write_branch_files(folder, "进院排查", "2025-02", {})
    assert not path.exists()


def test_typed_columns_short_cut_types_and_measures_like_typed_cell():
    """The typed columns' short cuts and per-value memo in _typed_columns (a province's
    execution reports: millions of cells) give typed_cell's very cells and the shown widths,
    also for equal values typed differently (Decimal("-0") as text, 1 next to True)."""
    import random

    from vbp_monitor.outputs.spreadsheets import COLUMN_KINDS, Column, _cell_width, _typed_columns, typed_cell

    columns = [Column(f"{kind}{breach}", kind, breach=breach)
               for kind in COLUMN_KINDS for breach in (None, "below", "above")]
    values = [None, Decimal("0"), Decimal("-0"), Decimal("-0.00"), Decimal("1.23456789"), Decimal("NaN"),
              Decimal("1E+3"), Decimal("1000"), Decimal("12345678.125"), Decimal("0.00005"), Decimal("-2.5"),
              dt.date(2025, 1, 2), dt.datetime(2025, 1, 2, 3, 4, 5), "abc", "=SUM(A1)", "医疗机构", "a\nb",
              "x\x01y", "", " lead", 3, 2.5, True, "12.5", "—"]
    generator = random.Random(11)
    values += [Decimal(generator.randint(-10**9, 10**9)) / Decimal(10 ** generator.randint(0, 8))
               for _ in range(300)]
    # figures as their text (PostgreSQL's NUMERIC read as text), and texts that are not quite
    values += [str(value) for value in values if type(value) is Decimal]
    values += ["1,234", " 7 ", "1_000", "-0", "0E-6", "Infinity", "-NaN", "１２", "0.000050"]
    values += values  # repeated values come from the memo
    # a column of mixed values (typed row by row), and columns of one type each, as a
    # database gives them (typed once per distinct value)
    samples = [values] + [[value for value in values if type(value) in kinds] + [None]
                          for kinds in ((Decimal,), (str,), (int,), (dt.date,), (Decimal, str), (Decimal, int))]
    for sample in samples * 2:  # (the second time, figure texts come from their typer's memo)
        rows = [[value] * len(columns) for value in sample]
        typed = _typed_columns(rows, columns)
        expected_widths = [0] * len(columns)
        for number, row in enumerate(rows):
            for index, (column, value) in enumerate(zip(typed, row, strict=True)):
                cell = column.cells[column.keys[number]]
                expected = typed_cell(value, columns[index]) if value is not None else (None, None)
                assert cell == expected and type(cell[0]) is type(expected[0]), (value, columns[index].kind)
                if expected[0] is not None:
                    expected_widths[index] = max(expected_widths[index], _cell_width(*expected))
        assert [column.width for column in typed] == expected_widths
