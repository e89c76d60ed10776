"""Spreadsheets for people (XLSX), safe against formula injection.

Institution names, messages and file names come from platform exports: a text such as
``=HYPERLINK("http://…")`` must reach Excel/WPS as text, never as a formula. openpyxl is
imported inside the functions (DAG files import this module at parse time).
"""
from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from decimal import Decimal
from pathlib import Path

from vbp_monitor.core.config import LOCAL_TZ as _LOCAL_TZ

# A spreadsheet evaluates a cell whose text starts with one of these (tab and CR too: some
# importers strip them and then see the formula behind).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# Control characters the XLSX format cannot hold (openpyxl would raise IllegalCharacterError).
_ILLEGAL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SHEET_TITLE_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
MAX_COLUMN_WIDTH = 60
MIN_COLUMN_WIDTH = 8

Sheets = dict[str, tuple[list[str], list[list]]]


def safe_cell(value):
    """The value to write in a cell: a text that would start a formula becomes literal text.

    Such a text gets a leading apostrophe (``'=SUM(A1)``), the convention Excel and WPS use
    for "this is text". Numbers, booleans and dates are returned unchanged, except that a
    Decimal becomes a float and a timezone-aware datetime becomes Asia/Shanghai local time
    (XLSX has no time zones).
    """
    if value is None or isinstance(value, (bool, int, float, dt.date, dt.time)):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value.astimezone(_LOCAL_TZ).replace(tzinfo=None)
        return value
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else str(value)
    text = value if isinstance(value, str) else str(value)
    text = _ILLEGAL_CHARACTERS.sub("", text)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


def _display_width(value) -> int:
    if value is None:
        return 0
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, dt.datetime):
        text = "2025-01-01 00:00:00"
    else:
        text = str(value)
    longest = max((line for line in text.splitlines() or [""]), key=len)
    # CJK characters take two columns
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in longest)


def _sheet_title(title: str, taken: set[str]) -> str:
    base = _SHEET_TITLE_FORBIDDEN.sub("_", str(title)).strip("'") or "Sheet"
    base = base[:31]
    candidate, n = base, 2
    while candidate.lower() in taken:
        suffix = f"({n})"
        candidate, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(candidate.lower())
    return candidate


def _workbook(sheets: Sheets):
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    default = workbook.active
    taken: set[str] = set()
    bold = Font(bold=True)
    for title, (header, rows) in sheets.items():
        sheet = workbook.create_sheet(_sheet_title(title, taken))
        widths = [0] * len(header)
        sheet.append([safe_cell(name) for name in header])
        for cell in sheet[1]:
            cell.font = bold
            cell.alignment = Alignment(vertical="center")
        for index, name in enumerate(header):
            widths[index] = _display_width(name)
        for row in rows:
            values = [safe_cell(value) for value in row]
            sheet.append(values)
            for index, value in enumerate(values):
                if index >= len(widths):
                    widths.append(0)
                widths[index] = max(widths[index], _display_width(value))
        # A neutralised text must stay text: openpyxl guesses a formula from a leading "=".
        for row in sheet.iter_rows(min_row=1):
            for cell in row:
                if isinstance(cell.value, str) and cell.data_type != "s":
                    cell.data_type = "s"
                elif isinstance(cell.value, dt.datetime):
                    cell.number_format = "yyyy-mm-dd hh:mm:ss"
                elif isinstance(cell.value, dt.date):
                    cell.number_format = "yyyy-mm-dd"
        sheet.freeze_panes = "A2"
        for index, width in enumerate(widths, start=1):
            sheet.column_dimensions[get_column_letter(index)].width = (
                min(MAX_COLUMN_WIDTH, max(MIN_COLUMN_WIDTH, width + 2))
            )
        if header:
            sheet.auto_filter.ref = f"A1:{get_column_letter(len(header))}{max(1, sheet.max_row)}"
    if len(workbook.sheetnames) > 1:
        workbook.remove(default)
    return workbook


def write_xlsx(path: Path, sheets: Sheets) -> Path:
    """Write sheets ``{title: (header, rows)}`` to ``path``; every cell goes through safe_cell.

    Bold, frozen header row with a filter; column widths fit the content (CJK counted
    double, at most 60 characters).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _workbook(sheets).save(path)
    return path


def remove_stale_branch_files(folder: Path, prefix: str, period_label: str, kept: set[str],
                              scope_branch: str | None = None) -> None:
    """Delete ``<prefix>_<branch>_<period>.xlsx`` files a rerun no longer writes.

    A rerun after corrections may leave a branch with nothing to list; its old file must not
    linger (or be mailed). Within an operator's branch scope only that branch's file goes.
    """
    if not folder.is_dir():
        return
    head, tail = f"{prefix}_", f"_{safe_name_part(period_label)}.xlsx"
    for path in folder.glob(f"{head}*{tail}"):
        branch_code = path.name[len(head):-len(tail)]
        if branch_code in kept or (scope_branch and branch_code != safe_name_part(scope_branch)):
            continue
        path.unlink()


_UNSAFE_IN_NAME = re.compile(r"[^0-9A-Za-z_\-\u4e00-\u9fff]")


def safe_name_part(text: str) -> str:
    """A code as part of a file name: only letters, digits, CJK, ``_`` and ``-``.

    Codes come from platform files; a ``/``, ``..`` or a line break must never steer where
    a file is written.
    """
    cleaned = _UNSAFE_IN_NAME.sub("_", str(text)).strip("_")
    return cleaned or "_"


def branch_file_path(folder: Path, prefix: str, audience: str, period_label: str, suffix: str = ".xlsx") -> Path:
    """``<folder>/<prefix>_<audience>_<period><suffix>``: every per-branch file is named so."""
    return Path(folder) / f"{prefix}_{safe_name_part(audience)}_{safe_name_part(period_label)}{suffix}"


def write_branch_files(folder: Path, prefix: str, period_label: str, workbooks: dict[str, Sheets],
                       scope_branch: str | None = None) -> dict[str, list[Path]]:
    """The one way to write per-branch (or per-audience) workbooks of a run.

    ``workbooks`` maps an audience (branch code, or the city's) to its sheets. Each is
    written to ``branch_file_path``; the run's earlier files that this run no longer writes
    are removed (within an operator's branch scope, only that branch's). Returns
    ``{audience: [path]}``, ready to attach.
    """
    written: dict[str, list[Path]] = {}
    for audience, sheets in sorted(workbooks.items()):
        written[audience] = [write_xlsx(branch_file_path(folder, prefix, audience, period_label), sheets)]
    remove_stale_branch_files(Path(folder), prefix, period_label,
                              kept={safe_name_part(a) for a in written}, scope_branch=scope_branch)
    return written
