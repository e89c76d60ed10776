"""Reports for the city bureau as Word documents (DOCX) with native charts, and their
workbooks written so that a rerun gives the same bytes.

A ``ReportDocument`` is a title, a note and numbered sections of paragraphs, tables
(``DraftTable`` of outputs/documents.py) and ``Chart``\\ s. A chart is a DrawingML chart part
(``word/charts/chartN.xml``) holding its figures as cached values: Word, WPS and LibreOffice
draw it themselves with their own fonts, so Chinese labels need nothing embedded and no
image library. Layout, fonts and the fixed zip stamps follow outputs/documents.py.

python-docx is imported inside the functions (this module is imported by rule logic, never
by a DAG file at parse time).
"""
from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from xml.sax.saxutils import escape

from vbp_monitor.outputs.documents import (
    BODY_FONT,
    GUIDANCE_FONT,
    HEADING_FONT,
    TITLE_FONT,
    DraftTable,
    _deterministic_zip,
    _paragraph,
    _set_font,
    new_a4_document,
    save_docx,
)

CHART_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.drawingml.chart+xml"
CHART_RELATIONSHIP = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/chart"
_NS = {
    "c": "http://schemas.openxmlformats.org/drawingml/2006/chart",
    "a": "http://schemas.openxmlformats.org/drawingml/2006/main",
    "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "wp": "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing",
}
# One colour per series, in order: bars blue, orange, …; lines (the lines to reach) red, green.
BAR_COLOURS = ("4472C4", "ED7D31", "A5A5A5", "FFC000")
LINE_COLOURS = ("C00000", "548235", "7030A0")
EMU_PER_CM = 360000


@dataclass(frozen=True)
class Series:
    name: str
    values: list[Decimal | None]  # one per category; None = no figure (a gap)


@dataclass(frozen=True)
class Chart:
    """A clustered column chart of ratios (percent axis) with optional lines (e.g. the
    thresholds to reach), drawn from cached values."""

    title: str
    categories: list[str]
    bars: list[Series]
    lines: list[Series] = field(default_factory=list)
    caption: str = ""  # a line under the chart (what it shows, where the figures are)
    width_cm: float = 15.5
    height_cm: float = 8.0


@dataclass
class ReportSection:
    heading: str  # with its numbering, e.g. 一、总体情况
    items: list = field(default_factory=list)  # str, DraftTable or Chart


@dataclass
class ReportDocument:
    title: str
    subtitle: str
    sections: list[ReportSection]
    notes: list[str] = field(default_factory=list)  # bold, under the subtitle (e.g. missing figures)
    signature: str = ""
    date_line: str = ""
    author: str = ""
    subject: str = ""
    keywords: str = ""
    category: str = ""


# ------------------------------------------------------------------ chart XML
def _text(value: str) -> str:
    return escape(str(value))


def _rich(text: str, size: int) -> str:
    return (f'<c:tx><c:rich><a:bodyPr/><a:lstStyle/><a:p><a:pPr><a:defRPr sz="{size}" b="1"/></a:pPr>'
            f'<a:r><a:rPr lang="zh-CN" sz="{size}" b="1"/><a:t>{_text(text)}</a:t></a:r></a:p></c:rich></c:tx>')


def _column(index: int) -> str:
    return chr(ord("B") + index)


def _categories_xml(categories: list[str]) -> str:
    points = "".join(f'<c:pt idx="{i}"><c:v>{_text(name)}</c:v></c:pt>' for i, name in enumerate(categories))
    return (f"<c:cat><c:strRef><c:f>Sheet1!$A$2:$A${len(categories) + 1}</c:f><c:strCache>"
            f'<c:ptCount val="{len(categories)}"/>{points}</c:strCache></c:strRef></c:cat>')


def _values_xml(series: Series, column: str) -> str:
    points = "".join(f'<c:pt idx="{i}"><c:v>{value}</c:v></c:pt>'
                     for i, value in enumerate(series.values) if value is not None)
    return (f"<c:val><c:numRef><c:f>Sheet1!${column}$2:${column}${len(series.values) + 1}</c:f><c:numCache>"
            f'<c:formatCode>0.00%</c:formatCode><c:ptCount val="{len(series.values)}"/>{points}'
            f"</c:numCache></c:numRef></c:val>")


def _series_head(series: Series, index: int) -> str:
    column = _column(index)
    return (f'<c:idx val="{index}"/><c:order val="{index}"/><c:tx><c:strRef><c:f>Sheet1!${column}$1</c:f>'
            f'<c:strCache><c:ptCount val="1"/><c:pt idx="0"><c:v>{_text(series.name)}</c:v></c:pt>'
            f"</c:strCache></c:strRef></c:tx>")


_LABELS = ('<c:dLbls><c:numFmt formatCode="0.00%" sourceLinked="0"/><c:spPr><a:noFill/><a:ln><a:noFill/></a:ln>'
           '</c:spPr><c:txPr><a:bodyPr/><a:lstStyle/><a:p><a:pPr><a:defRPr sz="700"/></a:pPr>'
           '<a:endParaRPr lang="zh-CN"/></a:p></c:txPr><c:showLegendKey val="0"/><c:showVal val="1"/>'
           '<c:showCatName val="0"/><c:showSerName val="0"/><c:showPercent val="0"/>'
           '<c:showBubbleSize val="0"/></c:dLbls>')


def chart_xml(chart: Chart) -> bytes:
    """The chart part: clustered columns, lines over them, a percent axis from 0."""
    bars = "".join(
        f"<c:ser>{_series_head(series, i)}<c:spPr><a:solidFill><a:srgbClr val=\"{BAR_COLOURS[i % len(BAR_COLOURS)]}\"/>"
        f"</a:solidFill></c:spPr><c:invertIfNegative val=\"0\"/>{_LABELS}"
        f"{_categories_xml(chart.categories)}{_values_xml(series, _column(i))}</c:ser>"
        for i, series in enumerate(chart.bars))
    lines = ""
    if chart.lines:
        offset = len(chart.bars)
        lines = "<c:lineChart><c:grouping val=\"standard\"/><c:varyColors val=\"0\"/>" + "".join(
            f"<c:ser>{_series_head(series, offset + i)}<c:spPr><a:ln w=\"28575\"><a:solidFill>"
            f"<a:srgbClr val=\"{LINE_COLOURS[i % len(LINE_COLOURS)]}\"/></a:solidFill><a:prstDash val=\"dash\"/>"
            f"</a:ln></c:spPr><c:marker><c:symbol val=\"none\"/></c:marker>"
            f"{_categories_xml(chart.categories)}{_values_xml(series, _column(offset + i))}"
            f"<c:smooth val=\"0\"/></c:ser>"
            for i, series in enumerate(chart.lines)) + (
            '<c:marker val="1"/><c:axId val="500100"/><c:axId val="500200"/></c:lineChart>')
    body = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<c:chartSpace xmlns:c="{_NS["c"]}" xmlns:a="{_NS["a"]}" xmlns:r="{_NS["r"]}">'
        '<c:date1904 val="0"/><c:lang val="zh-CN"/><c:roundedCorners val="0"/>'
        f'<c:chart><c:title>{_rich(chart.title, 1200)}<c:overlay val="0"/></c:title>'
        '<c:autoTitleDeleted val="0"/><c:plotArea><c:layout/>'
        '<c:barChart><c:barDir val="col"/><c:grouping val="clustered"/><c:varyColors val="0"/>'
        f'{bars}<c:gapWidth val="80"/><c:overlap val="-10"/><c:axId val="500100"/><c:axId val="500200"/>'
        f"</c:barChart>{lines}"
        '<c:catAx><c:axId val="500100"/><c:scaling><c:orientation val="minMax"/></c:scaling>'
        '<c:delete val="0"/><c:axPos val="b"/><c:numFmt formatCode="General" sourceLinked="0"/>'
        '<c:majorTickMark val="out"/><c:minorTickMark val="none"/><c:tickLblPos val="low"/>'
        '<c:crossAx val="500200"/><c:crosses val="autoZero"/><c:auto val="1"/><c:lblAlgn val="ctr"/>'
        '<c:lblOffset val="100"/><c:noMultiLvlLbl val="0"/></c:catAx>'
        '<c:valAx><c:axId val="500200"/><c:scaling><c:orientation val="minMax"/><c:min val="0"/></c:scaling>'
        '<c:delete val="0"/><c:axPos val="l"/><c:majorGridlines><c:spPr><a:ln><a:solidFill>'
        '<a:srgbClr val="D9D9D9"/></a:solidFill></a:ln></c:spPr></c:majorGridlines>'
        '<c:numFmt formatCode="0%" sourceLinked="0"/><c:majorTickMark val="out"/><c:minorTickMark val="none"/>'
        '<c:tickLblPos val="nextTo"/><c:crossAx val="500100"/><c:crosses val="autoZero"/>'
        '<c:crossBetween val="between"/></c:valAx></c:plotArea>'
        '<c:legend><c:legendPos val="b"/><c:overlay val="0"/></c:legend>'
        '<c:plotVisOnly val="1"/><c:dispBlanksAs val="gap"/></c:chart></c:chartSpace>'
    )
    return body.encode("utf-8")


def _inline_xml(relationship_id: str, number: int, chart: Chart) -> str:
    cx, cy = int(chart.width_cm * EMU_PER_CM), int(chart.height_cm * EMU_PER_CM)
    return (
        f'<w:drawing xmlns:w="{_NS["w"]}" xmlns:wp="{_NS["wp"]}" xmlns:a="{_NS["a"]}" xmlns:c="{_NS["c"]}" '
        f'xmlns:r="{_NS["r"]}"><wp:inline distT="0" distB="0" distL="0" distR="0">'
        f'<wp:extent cx="{cx}" cy="{cy}"/><wp:effectExtent l="0" t="0" r="0" b="0"/>'
        f'<wp:docPr id="{number}" name="图表 {number}" descr="{_text(chart.title)}"/><wp:cNvGraphicFramePr/>'
        '<a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/chart">'
        f'<c:chart r:id="{relationship_id}"/></a:graphicData></a:graphic></wp:inline></w:drawing>'
    )


def _add_chart(document, chart: Chart, number: int) -> None:
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from docx.oxml import parse_xml

    part = Part(PackURI(f"/word/charts/chart{number}.xml"), CHART_CONTENT_TYPE, chart_xml(chart),
                document.part.package)
    relationship_id = document.part.relate_to(part, CHART_RELATIONSHIP)
    paragraph = document.add_paragraph()
    paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER
    paragraph.add_run()._r.append(parse_xml(_inline_xml(relationship_id, number, chart)))
    if chart.caption:
        _paragraph(document, chart.caption, GUIDANCE_FONT, 12, align=WD_ALIGN_PARAGRAPH.CENTER)


TEXT_WIDTH_CM = 16.0  # A4 less the margins below
HEADER_UNITS = 8  # a header wraps rather than widen its column past 4 CJK characters
CELL_UNITS = 40  # a long text wraps at 20 CJK characters
CM_PER_UNIT = 0.19  # half a CJK character at 9 pt, with room for wide fallback fonts (digits)
CELL_PADDING_CM = 0.45
TABLE_FONT_SIZE = 9  # tables a size below the body's 小四 so that a branch's row fits a line


def _display_width(text: str) -> int:
    return sum(2 if ord(char) > 0x2E80 else 1 for char in str(text))


def _layout(table: DraftTable) -> tuple[list[float], float]:
    """(centimetres per column, font size): what each column's widest cell needs (CJK counted
    double; a header may wrap), the page's spare width shared in proportion; a table too wide
    for the page at the table font is set smaller (down to 7.5 pt) rather than break figures."""
    needs = []
    for index, header in enumerate(table.header):
        cells = [_display_width(row[index]) for row in table.rows if index < len(row)]
        units = max(min(_display_width(header), HEADER_UNITS), min(max(cells, default=0), CELL_UNITS), 4)
        needs.append(units * CM_PER_UNIT + CELL_PADDING_CM)
    total = sum(needs)
    size = float(TABLE_FONT_SIZE)
    if total > TEXT_WIDTH_CM:
        long_total = sum(need for need in needs if need > 3.0)
        room = TEXT_WIDTH_CM - (total - long_total)
        if long_total and room >= long_total * 0.5:  # long texts wrap more
            return [need if need <= 3.0 else need * room / long_total for need in needs], size
        size = max(7.5, TABLE_FONT_SIZE * TEXT_WIDTH_CM / total)
    return [need * TEXT_WIDTH_CM / total for need in needs], size


def _table(document, table: DraftTable, numeric: set[int]) -> None:
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Cm

    grid = document.add_table(rows=1, cols=len(table.header))
    grid.style = "Table Grid"
    grid.autofit = False
    centimetres, size = _layout(table)
    widths = [Cm(width) for width in centimetres]
    for column, width in zip(grid.columns, widths):
        column.width = width
    for cell, text, width in zip(grid.rows[0].cells, table.header, widths):
        cell.text = ""
        cell.width = width
        _set_font(cell.paragraphs[0].add_run(text), BODY_FONT, size, bold=True)
    for values in table.rows:
        cells = grid.add_row().cells
        for index, (cell, text, width) in enumerate(zip(cells, values, widths)):
            cell.text = ""
            cell.width = width
            if index in numeric:
                cell.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.RIGHT
            _set_font(cell.paragraphs[0].add_run(str(text)), BODY_FONT, size)


_NUMERIC_CELL = re.compile(r"^[-\d,.]+(%|元|家|份|条|个)?$|^—$")


def _numeric_columns(table: DraftTable) -> set[int]:
    """Columns whose every cell is a figure: right-aligned."""
    columns = set()
    for index in range(len(table.header)):
        cells = [str(row[index]) for row in table.rows if index < len(row)]
        if cells and all(_NUMERIC_CELL.match(cell) for cell in cells):
            columns.add(index)
    return columns


def write_report_docx(path: Path, report: ReportDocument, created: dt.date) -> Path:
    """Write ``report`` (A4, official-document fonts, native charts); identical input →
    identical bytes."""
    from docx.enum.text import WD_ALIGN_PARAGRAPH

    document = new_a4_document((3.0, 2.8, 2.6, 2.4))

    _paragraph(document, report.title, TITLE_FONT, 22, bold=True, align=WD_ALIGN_PARAGRAPH.CENTER)
    _paragraph(document, report.subtitle, GUIDANCE_FONT, 14, align=WD_ALIGN_PARAGRAPH.CENTER)
    for note in report.notes:
        _paragraph(document, note, BODY_FONT, 14, bold=True, indent_chars=2)
    charts = 0
    for part in report.sections:
        _paragraph(document, part.heading, HEADING_FONT, 16, indent_chars=2)
        for item in part.items:
            if isinstance(item, DraftTable):
                _table(document, item, _numeric_columns(item))
            elif isinstance(item, Chart):
                charts += 1
                _add_chart(document, item, charts)
            else:
                _paragraph(document, item, indent_chars=2)
    if report.signature:
        _paragraph(document, "")
        _paragraph(document, report.signature, align=WD_ALIGN_PARAGRAPH.RIGHT)
        _paragraph(document, report.date_line, align=WD_ALIGN_PARAGRAPH.RIGHT)

    return save_docx(document, path, created, author=report.author, title=report.title, subject=report.subject,
                     keywords=report.keywords, comments=report.subtitle, category=report.category)


_CORE_STAMP = re.compile(rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)")


def write_reproducible_xlsx(path: Path, sheets, title, created: dt.datetime) -> Path:
    """``spreadsheets.write_xlsx`` with the workbook's stamps fixed at ``created`` (document
    properties and zip members): the same figures give the same bytes on a rerun."""
    from vbp_monitor.outputs.spreadsheets import write_xlsx

    return stamp_xlsx(write_xlsx(Path(path), sheets, title=title), created)


def stamp_xlsx(path: Path, created: dt.datetime) -> Path:
    """Fix a written workbook's stamps (document properties, zip members) at ``created`` (UTC,
    naive): with its title block's time also fixed, a rerun on the same figures gives the same
    bytes."""
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = _CORE_STAMP.sub(rb"\g<1>" + stamp + rb"\g<3>", data)
            target.writestr(info, data)
    path.write_bytes(_deterministic_zip(out.getvalue(), created))
    return path
