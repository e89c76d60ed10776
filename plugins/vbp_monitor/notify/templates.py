"""The bodies of the emails people read (Chinese first), as HTML and as plain text.

An email's content is one ``Page`` (a title, paragraphs, sections of tables or text, closing
instructions); ``html(page)`` and ``text(page)`` render the same content twice, so that the
``text/plain`` alternative says what the HTML says (older Outlook, Foxmail and webmail
clients that show plain text, screen readers, previews).

Everything that comes from data is escaped here; callers pass plain display texts.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from html import escape

SEVERITY_COLOURS = {"critical": "#b71c1c", "high": "#e65100", "warning": "#b8860b", "info": "#546e7a"}
# One style block instead of inline styles on every cell: a branch's table may have hundreds of rows.
_STYLE = """
body { font-family: 'Microsoft YaHei', 'PingFang SC', SimSun, sans-serif; color: #222; }
table.vbp { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px 0; }
table.vbp th { border: 1px solid #bbb; background: #eef2f7; padding: 4px 6px; text-align: left; white-space: nowrap; }
table.vbp td { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; }
table.vbp td.num { text-align: right; white-space: nowrap; }
h3 { font-size: 15px; margin: 16px 0 4px 0; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: 8px; white-space: pre-wrap; }
p.action { font-weight: bold; }
p.footer { color: #777; font-size: 12px; }
"""
FOOTER_ZH = ("本邮件由集采监管监测系统（vbp-monitor）自动发送，请勿直接回复；"
             "同一预警只通知一次（操作人员要求重发时除外）。如对数据有疑问，请联系市医保局数据组。")
TEXT_RULE = "-" * 40


@dataclass(frozen=True)
class Table:
    """A table: ``numeric`` columns are right-aligned; ``severities`` (one per row) colours the
    first cell of each row; ``records``: in plain text one row per line (``列：值；…``) instead
    of aligned columns (for wide tables with long texts); ``note``: a line after it."""

    header: Sequence[str]
    rows: Sequence[Sequence]
    numeric: Collection[int] = frozenset()
    severities: Sequence[str] | None = None
    records: bool = False
    note: str = ""


@dataclass(frozen=True)
class Preformatted:
    text: str


@dataclass(frozen=True)
class Image:
    """An inline image of the email (a multipart/related part with this Content-ID)."""

    content_id: str  # without the angle brackets: name@domain
    alt: str


Block = Table | Preformatted | Image


@dataclass(frozen=True)
class Page:
    title: str
    paragraphs: Sequence[str]
    sections: Sequence[tuple[str, Block]] = ()
    # what the reader must do: after the overview, set apart (bold in HTML)
    actions: Sequence[str] = field(default_factory=tuple)
    footer: str = FOOTER_ZH  # (a distributor asks its branch bureau, not the city's data team)


# ---------------------------------------------------------------- HTML

def table(header: Sequence[str], rows: Sequence[Sequence], numeric_columns: Collection[int] = frozenset(),
          severities: Sequence[str] | None = None) -> str:
    """An HTML table; ``severities`` (one per row) colours the first cell of each row."""
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = []
    for index, row in enumerate(rows):
        cells = []
        for column, value in enumerate(row):
            text = escape(_cell(value))
            style = ' class="num"' if column in numeric_columns else ""
            if column == 0 and severities:
                severity = severities[index]
                colour = SEVERITY_COLOURS.get(severity, "#333")
                cells.append(f'<td{style} data-severity="{escape(severity)}">'
                             f'<b style="color:{colour}">{text}</b></td>')
            else:
                cells.append(f"<td{style}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    rows_html = "".join(body)
    return f'<table class="vbp"><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>'


def _block_html(block: Block) -> str:
    if isinstance(block, Table):
        html = table(block.header, block.rows, block.numeric, block.severities)
        return html + (f"<p>{escape(block.note)}</p>" if block.note else "")
    if isinstance(block, Preformatted):
        return f"<pre>{escape(block.text)}</pre>"
    return f'<p><img src="cid:{escape(block.content_id)}" alt="{escape(block.alt)}"></p>'


def html(page: Page) -> str:
    """The whole HTML email: title, paragraphs, actions, sections, footer."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{escape(page.title)}</title><style>{_STYLE}</style></head>",
        "<body>",
    ]
    parts.extend(f"<p>{escape(text)}</p>" for text in page.paragraphs)
    parts.extend(f'<p class="action">{escape(text)}</p>' for text in page.actions)
    for heading, block in page.sections:
        if heading:
            parts.append(f"<h3>{escape(heading)}</h3>")
        parts.append(_block_html(block))
    parts.append(f'<p class="footer">{escape(page.footer)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------- plain text

def _cell(value) -> str:
    return "" if value is None else " ".join(str(value).split())


def display_width(text: str) -> int:
    """Columns a text takes in a fixed-width font (CJK and full-width forms count two)."""
    return sum(2 if unicodedata.east_asian_width(char) in ("W", "F") else 1 for char in text)


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * max(0, width - display_width(text))
    return gap + text if right else text + gap


def table_text(block: Table) -> list[str]:
    """A table as plain lines: aligned columns, or one row per line (``records``)."""
    header = [_cell(name) for name in block.header]
    rows = [[_cell(value) for value in row] for row in block.rows]
    lines = []
    if block.records:
        for number, row in enumerate(rows, start=1):
            fields = []
            for column, value in enumerate(row):
                if not value:
                    continue
                if column == 0 and block.severities:
                    fields.append(f"【{value}】")
                else:
                    fields.append(f"{header[column]}：{value}；")
            lines.append(f"{number}. " + "".join(fields).rstrip("；"))
    else:
        widths = [max([display_width(header[c]), *(display_width(row[c]) for row in rows if c < len(row))])
                  for c in range(len(header))]
        lines.append("  ".join(_pad(name, widths[c], c in block.numeric) for c, name in enumerate(header)).rstrip())
        lines.append("  ".join("-" * width for width in widths))
        for row in rows:
            lines.append("  ".join(_pad(value, widths[c], c in block.numeric)
                                   for c, value in enumerate(row)).rstrip())
    if block.note:
        lines.append(block.note)
    return lines


def _block_text(block: Block) -> list[str]:
    if isinstance(block, Table):
        return table_text(block)
    if isinstance(block, Preformatted):
        return block.text.splitlines()
    return [f"［图：{block.alt}］"]


def text(page: Page) -> str:
    """The same email as plain text (the ``text/plain`` alternative)."""
    lines = [page.title, ""]
    for paragraph in page.paragraphs:
        lines += [paragraph, ""]
    for action in page.actions:
        lines += [action, ""]
    for heading, block in page.sections:
        if heading:
            lines += [f"【{heading}】"]
        lines += [*_block_text(block), ""]
    lines += [TEXT_RULE, page.footer]
    return "\n".join(lines) + "\n"
