"""Acceptance of the spreadsheets people print (issue 8): exact figures with number formats,
and a page set-up that prints.

``workbook_problems`` checks one XLSX as a branch officer's printer would meet it: no number
with more than 4 decimals (a binary float's tail), every money and ratio cell formatted, every
sheet A4 landscape, one page wide, its header rows repeated, page numbers in the footer.
``assert_demo_outputs`` applies it to every workbook the demo year writes and prints one
branch's execution report with LibreOffice (tests/test_e2e_demo.py calls it: the demo runs
once there). The tests here check the checker and the lists of the rules on the small city.
"""
from __future__ import annotations

import datetime as dt
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from vbp_monitor.outputs.spreadsheets import BookTitle, Column, write_xlsx

MAX_DECIMALS = 4
MAX_REPORT_PAGES = 6  # one branch's execution report, printed
# Column titles of money and ratio figures (the writer's typed columns and the alert
# workbooks' plain titles alike).
MONEY_TITLE = re.compile(r"金额|（元|元）|拨付|归还|差额")
RATIO_TITLE = re.compile(r"率|占比|比例|进度|/历史")
A4 = 9


def _decimals(value: float) -> int:
    exponent = Decimal(repr(value)).as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def workbook_problems(path: Path) -> list[str]:
    """What keeps ``path`` from printing right (empty when nothing does)."""
    import openpyxl

    problems = []
    book = openpyxl.load_workbook(path)
    for sheet in book.worksheets:
        where = f"{Path(path).name}「{sheet.title}」"
        setup = sheet.page_setup
        if not (sheet.sheet_properties.pageSetUpPr and sheet.sheet_properties.pageSetUpPr.fitToPage
                and setup.fitToWidth == 1 and setup.fitToHeight == 0):
            problems.append(f"{where}: not fitted to one page wide")
        if setup.orientation != "landscape" or int(setup.paperSize or 0) != A4:
            problems.append(f"{where}: not A4 landscape")
        if not sheet.print_title_rows:
            problems.append(f"{where}: no header rows repeated on every page (print titles)")
        if "&P" not in (sheet.oddFooter.center.text or ""):
            problems.append(f"{where}: no page numbers in the footer")
        header_row = int(re.sub(r"\D", "", sheet.freeze_panes or "A2")) - 1
        titles = {cell.column: str(cell.value or "") for cell in sheet[header_row]} if header_row >= 1 else {}
        for row in sheet.iter_rows(min_row=header_row + 1):
            for cell in row:
                value = cell.value
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                title = titles.get(cell.column, "")
                if isinstance(value, float) and _decimals(value) > MAX_DECIMALS:
                    problems.append(f"{where} {cell.coordinate}（{title}）: {value!r} has more than "
                                    f"{MAX_DECIMALS} decimals")
                unformatted = cell.number_format in (None, "", "General")
                if unformatted and (isinstance(value, float) or MONEY_TITLE.search(title)
                                    or RATIO_TITLE.search(title)):
                    problems.append(f"{where} {cell.coordinate}（{title}）: {value!r} has no number format")
    return problems


def assert_demo_outputs(output: Path) -> None:
    """Every workbook under ``output`` prints right; one branch's execution report prints in
    at most MAX_REPORT_PAGES pages (when LibreOffice is installed)."""
    books = sorted(Path(output).rglob("*.xlsx"))
    assert books, f"no workbook under {output}"
    problems = [problem for path in books for problem in workbook_problems(path)]
    assert not problems, f"{len(problems)} problems, e.g.\n" + "\n".join(problems[:20])
    reports = sorted(Path(output).rglob("执行报表_*.xlsx"), key=lambda path: path.stat().st_size)
    assert reports, "no execution report"
    if shutil.which("soffice") and shutil.which("pdftoppm"):
        from test_render_outputs import render

        largest = reports[-1]
        ((pages, _, _),) = render(largest, out=Path(output).parent / "rendered").values()
        assert 1 <= pages <= MAX_REPORT_PAGES, (largest.name, pages)


# ------------------------------------------------------------------ the checker
def test_a_float_tail_an_unformatted_ratio_and_a_missing_set_up_are_caught(tmp_path):
    import openpyxl

    good = write_xlsx(tmp_path / "好.xlsx", {"表": (
        [Column("金额（元）", "money"), Column("完成率", "percent"), "数量"],
        [[667.449999999999, Decimal("0.89996"), 12]],
    )}, title=BookTitle(office="市医保局", title="测试", period="2025-03"))
    assert workbook_problems(good) == []

    bad = tmp_path / "坏.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["金额（元）", "完成率", "数量"])
    sheet.append([667.449999999999, 0.5, 12])
    book.save(bad)
    problems = workbook_problems(bad)
    assert any("667.449999999999 has more than 4 decimals" in p for p in problems)
    assert any("（完成率）: 0.5 has no number format" in p for p in problems)
    assert any("（金额（元））" in p and "no number format" in p for p in problems)
    assert not any("（数量）" in p for p in problems)  # a count needs no format
    for missing in ("one page wide", "A4 landscape", "print titles", "page numbers"):
        assert any(missing in p for p in problems), missing


# ------------------------------------------------------------------ the rules' lists
@pytest.mark.usefixtures("output_dir")
def test_the_lists_of_the_sweep_and_the_review_print(engine):
    from builders import city, seed
    from test_entry_sweep import agreement
    from test_entry_sweep import purchase as sweep_purchase
    from test_volume_review import purchase as history_purchase
    from test_volume_review import report
    from vbp_monitor.core.periods import judged_month
    from vbp_monitor.core.profiles import load_profile
    from vbp_monitor.orchestration.run_context import RunContext
    from vbp_monitor.rules import entry_sweep, volume_review

    with engine.begin() as conn:
        seed(conn, city(
            agreements=[agreement("A1", "H1"), agreement("A2", "H2", quantity="3650.5")],
            orders=[sweep_purchase("O1", "H2", "719.99"), sweep_purchase("O2", "H1", "1000.3333"),
                    history_purchase("O-H1", "H1", "1000.1"), history_purchase("O-H2", "H2", 3000)],
            volume_reports=[report("R1", "H1", "333.3333"), report("R2", "H2", "2399.99", explanation="门诊量下降")],
        ))
    profile = load_profile("default")
    swept = entry_sweep.judge(engine, RunContext.for_test(entry_sweep.DAG_ID, judged_month(dt.date(2025, 4, 1))),
                              profile)
    reviewed = volume_review.judge(
        engine, RunContext.for_test(volume_review.DAG_ID, judged_month(dt.date(2024, 12, 2))), profile)
    books = [path for result in (swept, reviewed) for paths in result.attachments.values() for path in paths]
    assert len(books) == 4
    for path in books:
        assert workbook_problems(path) == [], path.name
