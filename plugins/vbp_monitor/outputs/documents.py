"""Annual reports as documents: reading a submitted report's paragraphs (DOCX, Markdown,
TXT), checking the template's section headings (seed 002 附件2), and writing the
pre-filled draft report (DOCX).

A heading is present when a paragraph, stripped of its numbering (一、 一. 1. (一) 1、 ①
and the like), spaces and punctuation, starts with the heading's words. Word's automatic
numbering is not part of a paragraph's text, so "总体进展" typed in an auto-numbered list
counts as well.

python-docx is imported inside the functions that need it (this module is imported by the
annual-report logic, never by a DAG file at parse time).
"""
from __future__ import annotations

import datetime as dt
import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

SUPPORTED_SUFFIXES = (".docx", ".md", ".txt")
REPORTS_FOLDER = "annual_reports"
TEXT_ENCODINGS = ("utf-8-sig", "gb18030")  # platform and office files are often GBK
CHINESE_ORDINALS = "一二三四五六七八九十"

# A numbering token at the start of a paragraph (after NFKC: full-width digits and
# brackets are ASCII, ① is 1, Ⅳ is IV). Punctuation around it is stripped separately.
_NUMBERING = re.compile(
    r"^(?:第[一二三四五六七八九十百零〇两\d]+(?:部分|章|节|条|项)?"
    r"|[一二三四五六七八九十百零〇两]+"
    r"|\d+"
    r"|[IVXivx]+(?![A-Za-z])"
    r"|[A-Za-z](?![A-Za-z]))"
)


class ReportUnreadable(Exception):
    """The report file is missing, of an unsupported type, or cannot be parsed."""


# ------------------------------------------------------------------ locating files
def report_path(landing_dir: Path, file_name: str) -> Path:
    """``annual_reports/<file_name>`` under the landing folder.

    The contract's ``file_name`` is a path under ``annual_reports/``; it is accepted with or
    without that prefix. A name that would leave the folder (``..``, absolute paths) is
    refused: the warehouse row must not make the pipeline read arbitrary files.
    """
    folder = Path(landing_dir) / REPORTS_FOLDER
    name = (file_name or "").strip().replace("\\", "/")
    parts = PurePosixPath(name).parts
    if parts and parts[0] == REPORTS_FOLDER:
        parts = parts[1:]
    if not parts or name.startswith("/") or ".." in parts or ":" in parts[0]:
        raise ReportUnreadable(f"文件路径 {file_name!r} 不在 {REPORTS_FOLDER}/ 目录下")
    return folder.joinpath(*parts)


# ------------------------------------------------------------------ reading
def _decode(raw: bytes) -> str:
    for encoding in TEXT_ENCODINGS:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ReportUnreadable("文本编码无法识别（应为 UTF-8 或 GB18030/GBK）")


def _docx_paragraphs(path: Path) -> list[str]:
    """Every paragraph of the body, including those in tables (nested too) and content
    controls, in document order."""
    from docx import Document
    from docx.oxml.ns import qn
    from docx.text.paragraph import Paragraph

    try:
        document = Document(str(path))
    except Exception as exc:  # python-docx raises several types for a broken package
        raise ReportUnreadable(f"不是有效的 Word（.docx）文件：{type(exc).__name__}") from exc
    body = document.element.body
    return [Paragraph(element, document).text for element in body.iter(qn("w:p"))]


def read_paragraphs(path: Path) -> list[str]:
    """The report's paragraphs (DOCX) or lines (Markdown, TXT; Markdown's leading ``#``
    removed)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ReportUnreadable(f"文件类型 {suffix or '（无扩展名）'} 不受支持（应为 .docx、.md 或 .txt）")
    if not path.is_file():
        raise ReportUnreadable("落地目录中找不到该文件")
    if suffix == ".docx":
        return _docx_paragraphs(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReportUnreadable(f"文件无法读取：{exc.strerror or exc}") from exc
    lines = _decode(raw).splitlines()
    if suffix == ".md":
        lines = [line.lstrip().lstrip("#") for line in lines]
    return lines


# ------------------------------------------------------------------ headings
def _is_separator(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in ("P", "S", "Z") or char.isspace()


def _strip_separators(text: str) -> str:
    index = 0
    while index < len(text) and _is_separator(text[index]):
        index += 1
    return text[index:]


def normalize_heading(text: str) -> str:
    """The paragraph without leading numbering, and without any spaces or punctuation."""
    text = unicodedata.normalize("NFKC", text or "")
    while True:
        stripped = _strip_separators(text)
        stripped = _strip_separators(_NUMBERING.sub("", stripped, count=1))
        if stripped == text:
            break
        text = stripped
    return "".join(char for char in text if not _is_separator(char))


@dataclass(frozen=True)
class HeadingCheck:
    """Which of the required headings a report holds; ``problem`` when it was unreadable."""

    required: tuple[str, ...]
    found: tuple[str, ...]
    problem: str | None = None

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(heading for heading in self.required if heading not in self.found)

    @property
    def complete(self) -> bool:
        return self.problem is None and not self.missing


def headings_in(paragraphs: list[str], required: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    keys = {heading: normalize_heading(heading) for heading in required}
    found = set()
    for paragraph in paragraphs:
        normalized = normalize_heading(paragraph)
        if not normalized:
            continue
        for heading, key in keys.items():
            if normalized.startswith(key):
                found.add(heading)
    return tuple(heading for heading in required if heading in found)


def check_headings(path: Path | None, required: list[str] | tuple[str, ...],
                   problem: str | None = None) -> HeadingCheck:
    """Check one file; a missing or unreadable file lacks every heading."""
    required = tuple(required)
    if problem is not None or path is None:
        return HeadingCheck(required, (), problem or "未提供报告文件")
    try:
        paragraphs = read_paragraphs(path)
    except ReportUnreadable as exc:
        return HeadingCheck(required, (), str(exc))
    return HeadingCheck(required, headings_in(paragraphs, required))


def numbered_heading(index: int, heading: str) -> str:
    """``一、总体进展`` for the template's ``index``-th (0-based) section."""
    ordinal = CHINESE_ORDINALS[index] if index < len(CHINESE_ORDINALS) else str(index + 1)
    return f"{ordinal}、{heading}"


# ------------------------------------------------------------------ the draft (DOCX)
@dataclass
class DraftTable:
    header: list[str]
    rows: list[list[str]]


@dataclass
class DraftSection:
    heading: str  # with its numbering, e.g. 一、总体进展
    guidance: str  # the template's line in parentheses
    paragraphs: list = field(default_factory=list)  # str or DraftTable


@dataclass
class DraftDocument:
    title: str
    note: str  # who filled it and how, above the first section
    sections: list[DraftSection]
    signature: str = "单位落款（盖章）"
    date_line: str = "XX年X月X日"
    author: str = "市医保局"
    subject: str = ""
    keywords: str = ""
    category: str = "年度报告草稿"  # the file's category property (e.g. 年度考核通报)


BODY_FONT = "仿宋"
HEADING_FONT = "黑体"
TITLE_FONT = "宋体"
GUIDANCE_FONT = "楷体"


def _set_font(run, name: str, size_pt: float, bold: bool = False) -> None:
    from docx.oxml.ns import qn
    from docx.shared import Pt

    run.font.name = name
    run.font.size = Pt(size_pt)
    run.font.bold = bold
    fonts = run._element.get_or_add_rPr().get_or_add_rFonts()
    fonts.set(qn("w:eastAsia"), name)


def _paragraph(document, text: str, font: str = BODY_FONT, size: float = 16, bold: bool = False,
               align=None, indent_chars: int = 0):
    from docx.shared import Pt

    paragraph = document.add_paragraph()
    if align is not None:
        paragraph.alignment = align
    if indent_chars:
        paragraph.paragraph_format.first_line_indent = Pt(size * indent_chars)
    paragraph.paragraph_format.space_after = Pt(0)
    paragraph.paragraph_format.line_spacing = Pt(28)
    _set_font(paragraph.add_run(text), font, size, bold)
    return paragraph


def _table(document, table: DraftTable) -> None:
    grid = document.add_table(rows=1, cols=len(table.header))
    grid.style = "Table Grid"
    for cell, text in zip(grid.rows[0].cells, table.header):
        cell.text = ""
        _set_font(cell.paragraphs[0].add_run(text), BODY_FONT, 12, bold=True)
    for values in table.rows:
        cells = grid.add_row().cells
        for cell, text in zip(cells, values):
            cell.text = ""
            _set_font(cell.paragraphs[0].add_run(str(text)), BODY_FONT, 12)


def _deterministic_zip(blob: bytes, stamp: dt.datetime) -> bytes:
    """python-docx stamps every zip member with the wall clock: re-pack with one fixed time
    (and in the same member order) so a rerun writes the same bytes."""
    out = io.BytesIO()
    date_time = (max(stamp.year, 1980), stamp.month, stamp.day, 0, 0, 0)
    with zipfile.ZipFile(io.BytesIO(blob)) as source, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=date_time)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16
            target.writestr(member, source.read(info.filename))
    return out.getvalue()


def new_a4_document(margins_cm: tuple[float, float, float, float]):
    """An empty A4 portrait python-docx document in the body font (Chinese text included);
    ``margins_cm``: top, bottom, left, right."""
    from docx import Document
    from docx.oxml.ns import qn
    from docx.shared import Cm

    document = Document()
    section = document.sections[0]
    section.page_height, section.page_width = Cm(29.7), Cm(21.0)
    top, bottom, left, right = (Cm(value) for value in margins_cm)
    section.top_margin, section.bottom_margin = top, bottom
    section.left_margin, section.right_margin = left, right
    normal = document.styles["Normal"]
    normal.font.name = BODY_FONT
    normal.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), BODY_FONT)
    return document


def write_draft_docx(path: Path, draft: DraftDocument, created: dt.date) -> Path:
    """Write ``draft`` as a DOCX in the template's layout; identical input → identical bytes."""
    from docx.enum.text import WD_ALIGN_PARAGRAPH

    document = new_a4_document((3.7, 3.5, 2.8, 2.6))

    _paragraph(document, draft.title, TITLE_FONT, 22, bold=True, align=WD_ALIGN_PARAGRAPH.CENTER)
    _paragraph(document, draft.note, GUIDANCE_FONT, 14, align=WD_ALIGN_PARAGRAPH.CENTER)
    for part in draft.sections:
        _paragraph(document, part.heading, HEADING_FONT, 16, indent_chars=2)
        if part.guidance:  # a notice's sections have no template guidance
            _paragraph(document, part.guidance, GUIDANCE_FONT, 16, indent_chars=2)
        for item in part.paragraphs:
            if isinstance(item, DraftTable):
                _table(document, item)
            else:
                _paragraph(document, item, indent_chars=2)
    _paragraph(document, "")
    _paragraph(document, draft.signature, align=WD_ALIGN_PARAGRAPH.RIGHT)
    _paragraph(document, draft.date_line, align=WD_ALIGN_PARAGRAPH.RIGHT)

    return save_docx(document, path, created, author=draft.author, title=draft.title, subject=draft.subject,
                     keywords=draft.keywords, comments=draft.note, category=draft.category)


def save_docx(document, path: Path, created: dt.date, *, author: str, title: str, subject: str,
              keywords: str, comments: str, category: str) -> Path:
    """Write a python-docx document with its properties stamped at ``created`` (midnight) and a
    deterministic zip: the same content gives the same bytes, so a rerun changes no file."""
    stamp = dt.datetime.combine(created, dt.time())
    props = document.core_properties
    props.author = author
    props.last_modified_by = author
    props.title = title
    props.subject = subject
    props.keywords = keywords
    props.comments = comments
    props.category = category
    props.language = "zh-CN"
    props.revision = 1
    props.created = stamp
    props.modified = stamp
    props.last_printed = stamp

    buffer = io.BytesIO()
    document.save(buffer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_deterministic_zip(buffer.getvalue(), stamp))
    return path
