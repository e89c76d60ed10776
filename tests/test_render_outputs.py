"""scripts/render_outputs.sh: a real office suite (LibreOffice) opens and prints our files.

Runs only where LibreOffice and poppler are installed (.ci/run installs them); each
conversion takes a few seconds, so the files are few and small.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from vbp_monitor.outputs.spreadsheets import BookTitle, Column, write_xlsx

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "render_outputs.sh"
A4_LANDSCAPE = "842x595"  # points

pytestmark = pytest.mark.skipif(
    not (shutil.which("soffice") and shutil.which("pdftoppm")),
    reason="LibreOffice (soffice) and poppler (pdftoppm) are not installed",
)

# The execution report's 一院一档 columns: at 100 % they are about twice an A4 page wide.
HEADER = [
    Column("医疗机构代码"), Column("医疗机构名称"), Column("批次名称"), Column("通用名"),
    Column("协议年度起", "date"), Column("协议年度止", "date"), Column("统计截至", "date"),
    Column("约定采购量", "quantity"), Column("约定采购比例", "percent"),
    Column("本月中选产品采购数量", "quantity"), Column("本月中选产品采购金额（元）", "money"),
    Column("本月同通用名采购数量", "quantity"), Column("本月同通用名采购金额（元）", "money"),
    Column("中选产品采购数量占比", "percent"), Column("中选产品采购金额占比", "percent"),
    Column("本月非中选产品采购数量", "quantity"), Column("本月非中选产品采购金额（元）", "money"),
    Column("累计中选产品采购数量", "quantity"), Column("约定采购量完成率", "percent", breach="below"),
    Column("序时进度", "percent"),
]
TITLE = BookTitle(office="赣州市医疗保障局章贡分局", title="带量执行报表", period="2025-03",
                  generated_at=dt.datetime(2025, 4, 1, 10, 0),
                  profile="默认口径（赣市医保字〔2023〕28号为主；预付30%）")


def _row(number: int) -> list:
    return [f"H{number:04d}", f"赣州市第{number}人民医院", "第九批国家组织药品集中带量采购", "阿莫西林克拉维酸钾片",
            dt.date(2025, 1, 1), dt.date(2025, 12, 31), dt.date(2025, 3, 31), Decimal(12000), Decimal("0.8"),
            Decimal(number * 7 % 900), 667.449999999999 * number, Decimal(1000), Decimal("66745.123"),
            Decimal("0.3945213"), 0.897000000000001, Decimal(20), Decimal("1234.5"), Decimal(3000),
            Decimal("0.89996"), Decimal("0.2465753")]


def render(*files: Path, out: Path, env: dict | None = None) -> dict[str, tuple[int, str, Path]]:
    """{file name: (pages, page size, png)} as the script reports them (also used by the
    acceptance of the demo's outputs, tests/test_output_formats.py)."""
    result = subprocess.run(["bash", str(SCRIPT), "--out", str(out), *map(str, files)],
                            capture_output=True, text=True, timeout=240,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    reported = {}
    for line in result.stdout.splitlines():
        pages, size, file, png = line.split("\t")
        reported[Path(file).name] = (int(pages), size, Path(png))
    return reported


def test_a_200_row_report_prints_one_page_wide_and_a_docx_opens(tmp_path):
    from docx import Document

    outputs = tmp_path / "output" / "vbp_monthly_monitoring" / "2025-03"
    write_xlsx(outputs / "执行报表_B1_2025-03.xlsx", {"一院一档": (HEADER, [_row(n) for n in range(200)])},
               title=TITLE)
    write_xlsx(outputs / "执行报表_B2_2025-03.xlsx", {"一院一档": (HEADER, [_row(1)])}, title=TITLE)
    document = Document()
    document.add_heading("章贡分局2024年度集采工作报告（草稿）", level=1)
    document.add_paragraph("一、总体进展")
    document.save(tmp_path / "output" / "年度报告_B1_2024.docx")

    # without file arguments: the largest file of each kind under VBP_OUTPUT_DIR
    reported = render(out=tmp_path / "img", env={"VBP_OUTPUT_DIR": str(tmp_path / "output")})
    assert set(reported) == {"执行报表_B1_2025-03.xlsx", "年度报告_B1_2024.docx"}

    pages, size, png = reported["执行报表_B1_2025-03.xlsx"]
    # one page wide: 200 rows of 20 columns fill a few landscape pages, never 2-4 pages a row
    assert size == A4_LANDSCAPE
    assert 2 <= pages <= 6
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    pages, _, png = reported["年度报告_B1_2024.docx"]
    assert pages == 1 and png.is_file()


def test_a_one_row_list_prints_on_one_page(tmp_path):
    path = write_xlsx(tmp_path / "延迟响应清单_B1_2025-03-02.xlsx", {"延迟响应清单": (
        [Column("订单编号"), Column("医疗机构名称"), Column("配送企业"), Column("下单时间", "datetime"),
         Column("48小时时限", "datetime"), Column("订单金额（元）", "money"), Column("说明", "long_text")],
        [["O-0001", "赣州市人民医院", "江西某某医药有限公司", dt.datetime(2025, 2, 28, 9, 30),
          dt.datetime(2025, 3, 2, 9, 30), Decimal("21966.708"), "配送企业未在48小时内响应订单，请于24小时内反馈。"]],
    )}, title=BookTitle(office="章贡分局", title="延迟响应清单", period="2025-03-02"))
    ((pages, size, png),) = render(path, out=tmp_path / "img").values()
    assert (pages, size) == (1, A4_LANDSCAPE)
    assert png == tmp_path / "img" / "延迟响应清单_B1_2025-03-02.png" and png.is_file()


def test_a_file_that_does_not_exist_fails(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), "--out", str(tmp_path), str(tmp_path / "无.xlsx")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no such file" in result.stderr


@pytest.mark.usefixtures("output_dir")
def test_the_sweep_list_the_review_list_and_the_draft_report_print(engine, tmp_path):
    """The files the rules write on the small city, as LibreOffice prints them: each list on
    one A4 landscape page, the draft annual report on A4 portrait pages."""
    from builders import city, seed
    from test_annual_report import _seed_year_of_figures
    from test_entry_sweep import agreement
    from test_entry_sweep import purchase as sweep_purchase
    from test_volume_review import purchase as history_purchase
    from test_volume_review import report
    from vbp_monitor.core.periods import judged_day, judged_month
    from vbp_monitor.core.profiles import load_profile
    from vbp_monitor.orchestration.run_context import RunContext
    from vbp_monitor.rules import annual_report, entry_sweep, volume_review

    if engine.dialect.name != "sqlite":
        pytest.skip("the files are the same on both databases (their tests say so): rendered once")
    _seed_year_of_figures(engine)
    with engine.begin() as conn:
        more = city(
            agreements=[agreement("A1", "H1"), agreement("A2", "H2")],
            orders=[sweep_purchase("O-S1", "H2", "719.99"), history_purchase("O-H1", "H1", 1000),
                    history_purchase("O-M1", "M1", 1000)],
            volume_reports=[report("R1", "H1", 500, explanation="病区合并，门诊量下降约三成；" * 4)],
        )
        seed(conn, {table: more[table] for table in ("agreements", "orders", "volume_reports")})
    profile = load_profile("default")
    swept = entry_sweep.judge(engine, RunContext.for_test(entry_sweep.DAG_ID, judged_month(dt.date(2025, 4, 1))),
                              profile)
    reviewed = volume_review.judge(
        engine, RunContext.for_test(volume_review.DAG_ID, judged_month(dt.date(2024, 12, 2))), profile)
    drafted = annual_report.judge(
        engine, RunContext.for_test(annual_report.DAG_ID, judged_day(dt.date(2025, 1, 5))), profile)
    files = [swept.attachments["B2"][0], reviewed.attachments["B1"][0], drafted.attachments["B1"][0]]

    reported = render(*files, out=tmp_path / "img")
    sweep, review, draft = (reported[path.name] for path in files)
    # each list on one page, its criteria sheet on another
    assert sweep[:2] == (2, A4_LANDSCAPE) and review[:2] == (2, A4_LANDSCAPE)
    assert draft[1] == "595x842" and 2 <= draft[0] <= 4  # A4 portrait, the template's four sections
