"""HTML bodies of the emails people read (Chinese first).

Everything that comes from data is escaped here; callers pass plain display texts.
"""
from __future__ import annotations

from collections.abc import Collection
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
p.footer { color: #777; font-size: 12px; }
"""
_FOOTER = (
    '<p class="footer">本邮件由集采监管监测系统（vbp-monitor）自动发送，请勿直接回复；'
    "同一预警只通知一次（操作人员要求重发时除外）。如对数据有疑问，请联系市医保局数据组。<br>"
    "This message was sent automatically by vbp-monitor.</p>"
)


def table(header: list[str], rows: list[list], numeric_columns: Collection[int] = frozenset(),
          severities: list[str] | None = None) -> str:
    """An HTML table; ``severities`` (one per row) colours the first cell of each row."""
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = []
    for index, row in enumerate(rows):
        cells = []
        for column, value in enumerate(row):
            text = escape("" if value is None else str(value))
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


def page(title: str, paragraphs: list[str], sections: list[tuple[str, str]]) -> str:
    """A whole HTML email: a title, plain paragraphs (escaped) and (heading, html) sections."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>",
        "<body>",
    ]
    parts.extend(f"<p>{escape(text)}</p>" for text in paragraphs)
    for heading, html in sections:
        if heading:
            parts.append(f"<h3>{escape(heading)}</h3>")
        parts.append(html)
    parts.append(_FOOTER)
    parts.append("</body></html>")
    return "\n".join(parts)


def preformatted(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"
