"""The one workbook writer: typed cells, a title block and a page set-up that prints (issue 8)."""
from __future__ import annotations

import datetime as dt
import pickle
import re
import zipfile
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from vbp_monitor.core import formatting
from vbp_monitor.outputs.spreadsheets import (
    LINE_HEIGHT,
    TECHNICAL_SHEET,
    BookTitle,
    Column,
    typed_cell,
    write_branch_files,
    write_xlsx,
)

PROFILE = {"name": "default", "title": "默认口径（赣市医保字〔2023〕28号为主；预付30%）"}
TITLE = BookTitle(office="赣州市医疗保障局章贡分局", title="带量执行报表", period="2025-03",
                  generated_at=dt.datetime(2025, 4, 1, 2, 5, tzinfo=dt.UTC), profile=PROFILE)
LONG_TEXT = "同通用名采购 − 中选产品采购；统计自 max(本月1日, 协议年度起) 至 min(本月末, 协议年度止)，" * 3

HEADER = [
    Column("医疗机构名称"),
    Column("采购金额（元）", "money"),
    Column("未付金额（元）", "money", breach="above"),
    Column("完成率", "percent", breach="below"),
    Column("序时进度", "percent"),
    Column("约定采购量", "quantity"),
    Column("协议年度起", "date"),
    Column("下单时间", "datetime"),
    Column("说明", "long_text"),
    "备注",  # a plain title: kinds guessed from the values
]
ROWS = [
    ["第一人民医院", 667.449999999999, Decimal("0.004"), Decimal("0.89996"), 0.2465753424657534,
     Decimal("12000.0000"), "2025-01-01", "2025-03-02 10:15:00", LONG_TEXT, 0.1 + 0.2],
    ['=HYPERLINK("http://evil.example","x")', Decimal("21966.708"), Decimal("-0.004"), Decimal("1"),
     Decimal("0.5"), Decimal("2.5"), dt.date(2025, 2, 1), dt.datetime(2025, 3, 2, 2, 0, tzinfo=dt.UTC),
     "短说明", Decimal("89.7000000000001")],
    ["第三人民医院", None, "—", None, None, None, None, None, None, dt.date(2025, 3, 31)],
]


@pytest.fixture
def book(tmp_path):
    path = write_xlsx(tmp_path / "执行报表.xlsx", {
        TECHNICAL_SHEET: (["alert_key"], [["a" * 64]]),
        "一院一档": (HEADER, ROWS),
        "口径说明": (["项目", Column("口径", "long_text")], [["非中选产品采购", LONG_TEXT]]),
    }, title=TITLE)
    return path, load_workbook(path)


def test_figures_are_numbers_with_the_format_of_their_kind(book):
    _, workbook = book
    sheet = workbook["一院一档"]
    first, second = sheet[5], sheet[6]
    assert [cell.value for cell in sheet[4]] == [str(column) for column in HEADER]

    assert (first[1].value, first[1].number_format) == (667.45, formatting.XLSX_MONEY)
    assert (second[1].value, second[1].number_format) == (21966.71, formatting.XLSX_MONEY)
    # the one rounding rule, applied where the column says a breach is measured
    assert first[2].value == 0.01 and second[2].value == 0  # unpaid 0.004 元 never reads 0.00
    assert (first[3].value, first[3].number_format) == (0.8999, formatting.XLSX_PERCENT)  # 89.99 %, not 90.00 %
    assert (first[4].value, first[4].number_format) == (0.2466, formatting.XLSX_PERCENT)
    assert (first[5].value, first[5].number_format) == (12000, formatting.XLSX_QUANTITY)  # a whole quantity: integer
    assert isinstance(first[5].value, int)
    assert (second[5].value, second[5].number_format) == (2.5, formatting.XLSX_DECIMAL)
    assert (first[6].value, first[6].number_format) == (dt.datetime(2025, 1, 1), formatting.XLSX_DATE)
    assert (first[7].value, first[7].number_format) == (dt.datetime(2025, 3, 2, 10, 15), formatting.XLSX_DATETIME)
    assert second[7].value == dt.datetime(2025, 3, 2, 10, 0)  # UTC → Asia/Shanghai wall time
    # guessed from the values: an exact figure without its float tail, a date as a date
    assert (first[9].value, first[9].number_format) == (0.3, formatting.XLSX_DECIMAL)
    assert second[9].value == 89.7
    assert sheet["J7"].number_format == formatting.XLSX_DATE
    # what a kind cannot read stays text; empty stays empty
    assert (sheet["C7"].value, sheet["C7"].data_type) == ("—", "s")
    assert sheet["B7"].value is None


def test_texts_never_become_formulas(book, tmp_path):
    _, workbook = book
    sheet = workbook["一院一档"]
    assert sheet["A6"].value == "'=HYPERLINK(\"http://evil.example\",\"x\")"
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)
    hostile = BookTitle(office="=cmd|' /C calc'!A0", title="+清单", period="2025-03")
    workbook = load_workbook(write_xlsx(tmp_path / "x.xlsx", {"清单": (["a"], [[1]])}, title=hostile))
    assert workbook["清单"]["A1"].value.startswith("'=") and workbook["清单"]["A1"].data_type == "s"
    assert workbook["清单"]["A2"].value.startswith("'+")


def test_no_money_cell_carries_a_binary_float_tail(book):
    path, workbook = book
    values = {}
    with zipfile.ZipFile(path) as archive:
        for index, sheet in enumerate(workbook.worksheets, start=1):
            xml = archive.read(f"xl/worksheets/sheet{index}.xml").decode()
            for coordinate, value in re.findall(r'<c r="([A-Z]+\d+)"[^>]*><v>([^<]*)</v>', xml):
                if not sheet[coordinate].is_date:  # a date-time is a day count with a fraction
                    values[f"{sheet.title}!{coordinate}"] = value
    assert {values["一院一档!B5"], values["一院一档!B6"], values["一院一档!D5"]} == {"667.45", "21966.71", "0.8999"}
    tails = {where: value for where, value in values.items() if re.fullmatch(r"-?\d+\.\d{5,}(E-?\d+)?", value)}
    assert tails == {}


def test_title_block_above_a_frozen_filtered_header(book):
    _, workbook = book
    sheet = workbook["一院一档"]
    assert sheet["A1"].value == "赣州市医疗保障局章贡分局"
    assert sheet["A2"].value == "带量执行报表·一院一档（2025年3月）"
    assert sheet["A3"].value == "生成时间：2025-04-01 10:05　政策口径：" + PROFILE["title"]
    assert "default" not in sheet["A3"].value  # the profile's Chinese title, not its file name
    assert sheet["A2"].font.b and sheet["A2"].font.sz > sheet["A5"].font.sz
    assert "A2:J2" in {str(merged) for merged in sheet.merged_cells.ranges}
    assert all(cell.font.b for cell in sheet[4])
    assert sheet.freeze_panes == "A5"
    assert sheet.auto_filter.ref == "A4:J7"


def test_every_sheet_prints_a4_landscape_one_page_wide_with_repeated_header(book):
    _, workbook = book
    assert workbook.sheetnames == ["一院一档", "口径说明", TECHNICAL_SHEET]  # technical sheet last
    for sheet in workbook.worksheets:
        assert sheet.page_setup.orientation == "landscape"
        assert str(sheet.page_setup.paperSize) == sheet.PAPERSIZE_A4 == "9"
        assert sheet.sheet_properties.pageSetUpPr.fitToPage is True
        assert (int(sheet.page_setup.fitToWidth), int(sheet.page_setup.fitToHeight)) == (1, 0)
        assert sheet.print_title_rows == "$4:$4"
        assert "&P" in sheet.oddFooter.center.text and "&N" in sheet.oddFooter.center.text
        assert sheet.oddFooter.center.text.startswith("第")
        assert sheet.oddFooter.left.text == f"赣州市医疗保障局章贡分局　带量执行报表·{sheet.title}（2025年3月）"
        assert sheet.page_margins.left < 0.75 and sheet.page_margins.bottom >= 0.5


def test_long_text_wraps_in_a_capped_column(book):
    _, workbook = book
    sheet = workbook["口径说明"]
    cell = sheet["B5"]
    assert cell.alignment.wrap_text
    assert sheet.column_dimensions["B"].width <= 45
    assert sheet.row_dimensions[5].height >= 4 * LINE_HEIGHT  # ~180 columns of text: ≥ 4 lines
    details = workbook["一院一档"]
    assert details["I5"].alignment.wrap_text and details["I6"].alignment.wrap_text
    assert details.row_dimensions[5].height > details.row_dimensions[6].height  # long vs short
    assert not details["A5"].alignment.wrap_text


def test_widths_fit_cjk_and_headers_wrap_without_a_lone_character(tmp_path):
    headers = ["医疗机构代码", "本月中选产品采购金额（元）", "约定采购比例", "约定采购量完成率"]
    path = write_xlsx(tmp_path / "w.xlsx", {"表": (
        [Column(headers[0]), Column(headers[1], "money"), Column(headers[2], "percent"),
         Column(headers[3], "percent")], [["H0001", Decimal("37991.51"), Decimal("0.8"), Decimal("0.9")]])})
    sheet = load_workbook(path)["表"]
    for letter, header in zip("ABCD", headers):
        width = sheet.column_dimensions[letter].width
        chars_per_line = int(width * 1.05 + 0.15) // 2  # what Excel holds of CJK (2 units each)
        last_line = len(header) % chars_per_line
        assert last_line != 1, (header, width)  # never 「医疗机构代/码」
        assert -(-len(header) // chars_per_line) <= 3
    assert sheet["A1"].alignment.wrap_text
    assert sheet.row_dimensions[1].height > sheet.row_dimensions[2].height  # wrapped header row


def test_without_a_title_the_header_stays_on_row_1(tmp_path):
    sheet = load_workbook(write_xlsx(tmp_path / "t.xlsx", {"清单": (HEADER, ROWS)}))["清单"]
    assert sheet["A1"].value == "医疗机构名称" and sheet.freeze_panes == "A2"
    assert sheet.print_title_rows == "$1:$1" and sheet.auto_filter.ref == "A1:J4"
    assert sheet["B2"].number_format == formatting.XLSX_MONEY


def test_branch_files_get_each_branch_its_own_office(tmp_path):
    sheets = {"清单": ([Column("金额（元）", "money")], [[Decimal("1234.5")]])}
    written = write_branch_files(tmp_path, "预付对账", "2025-03", {"B1": sheets, "B2": sheets},
                                 title={"B1": TITLE.for_office("章贡分局"), "B2": TITLE.for_office("南康分局")})
    offices = {code: load_workbook(paths[0])["清单"]["A1"].value for code, paths in written.items()}
    assert offices == {"B1": "章贡分局", "B2": "南康分局"}
    shared = write_branch_files(tmp_path, "预付对账", "2025-03", {"B1": sheets}, title=TITLE)
    assert load_workbook(shared["B1"][0])["清单"]["A4"].value == "金额（元）"


def test_column_is_its_title_and_checks_its_kind():
    column = Column("完成率", "percent", breach="below")
    assert column == "完成率" and column.title == "完成率" and f"{column}" == "完成率"
    assert pickle.loads(pickle.dumps(column)).breach == "below"
    assert pickle.loads(pickle.dumps(column)).kind == "percent"
    with pytest.raises(ValueError):
        Column("金额", "currency")
    with pytest.raises(ValueError):
        Column("金额", "money", breach="under")


@pytest.mark.parametrize("value, column, expected", [
    (Decimal("1234.565"), Column("a", "money"), (1234.57, formatting.XLSX_MONEY)),          # half up
    (Decimal("1234.565"), Column("a", "money", breach="below"), (1234.56, formatting.XLSX_MONEY)),
    ("1,234.50", Column("a", "money"), (1234.5, formatting.XLSX_MONEY)),
    (Decimal("0.3945213"), Column("a", "percent"), (0.3945, formatting.XLSX_PERCENT)),
    (Decimal("7"), Column("a", "integer"), (7, "0")),
    (Decimal("0.123400"), Column("a", "text"), ("0.123400", None)),               # text: as given
    (0.30000000000000004, Column("a", "text"), ("0.30000000000000004", None)),
    ("not a date", Column("a", "date"), ("not a date", None)),
    (dt.datetime(2025, 3, 2, 23, 30, tzinfo=dt.UTC), Column("a", "date"), (dt.date(2025, 3, 3), formatting.XLSX_DATE)),
    (7, None, (7, None)),                                                         # a plain int
    (True, None, (True, None)),
])
def test_typed_cell(value, column, expected):
    assert typed_cell(value, column) == expected
