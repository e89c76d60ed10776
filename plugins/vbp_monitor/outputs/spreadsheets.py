"""Spreadsheets for people (XLSX): typed, printable, safe against formula injection.

The one place that builds every workbook the pipeline writes (issue 8, domain.md › Figures
shown to people):

* **typed columns** — a header entry is a plain title (the kind of each cell is guessed from
  its value) or a ``Column(title, kind)``; figures are written as numbers with the number
  format of their kind (core/formatting.py's XLSX_* formats), rounded by the one rounding
  rule to what the format shows, so a cell never carries a binary float's tail
  (667.449999999999) and the printed figure is the cell's value;
* an optional **title block** above the header (issuing office, title and period, generation
  time in Asia/Shanghai, the policy profile's Chinese title, then any ``notes`` lines);
* **section rows** (``SectionRow``: a bold heading merged across the table, e.g. one per
  distributor above its orders) and cells typed on their own (``TypedValue``: a column of
  figures whose unit varies by row);
* a bold, wrapped, frozen header row with a filter; column widths fitted (CJK counted
  double), long text wrapped at a capped width;
* a **page set-up that prints**: A4 landscape, one page wide, the header row repeated on
  every page, 「第 N 页 / 共 M 页」 in the footer.

Institution names, messages and file names come from platform exports: a text such as
``=HYPERLINK("http://…")`` must reach Excel/WPS as text, never as a formula. openpyxl is
imported inside the functions (DAG files import this module at parse time).

Workbooks are written in openpyxl's write-only mode; the rows of a sheet go into the sheet's
file as XML text (``_RowStream``: the cells openpyxl would write, without an openpyxl Cell
and an XML element per cell), between the elements openpyxl writes above and below them.
A large sheet (the 一院一档 of a branch) costs a few dictionary look-ups a cell: each distinct
value of a column is typed and rendered once (a figure's text once per run: the number
kinds' typers keep what they read), a row is its cells' pieces joined; a caller that hands
``write_branch_files`` one audience at a time holds one workbook's rows at a time.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from operator import itemgetter
from pathlib import Path
from typing import cast

from vbp_monitor.core.config import LOCAL_TZ as _LOCAL_TZ
from vbp_monitor.core.formatting import (
    CENT,
    QUANTITY_PLACES,
    STORED_PLACES,
    XLSX_DATE,
    XLSX_DATETIME,
    XLSX_DECIMAL,
    XLSX_MONEY,
    XLSX_PERCENT,
    XLSX_QUANTITY,
    Breach,
    as_date,
    as_datetime,
    datetime_local,
    decimal_of,
    now_local,
    period_zh,
    rounded,
)

# A spreadsheet evaluates a cell whose text starts with one of these (tab and CR too: some
# importers strip them and then see the formula behind).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# Characters the XLSX format cannot hold: control characters (openpyxl would raise
# IllegalCharacterError) and the two XML non-characters U+FFFE, U+FFFF.
_ILLEGAL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_SHEET_TITLE_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
MAX_COLUMN_WIDTH = 60
MIN_COLUMN_WIDTH = 8
# Text wider than this wraps (20 CJK characters a line); long_text columns always may.
TEXT_WRAP_WIDTH = 40
# A header wraps onto at most this many lines before it widens its column.
HEADER_LINES = 3
# Points per line at the body's font size: CJK fonts need ~1.45 em (Noto CJK, where
# LibreOffice renders 宋体), more than a spreadsheet's default row of 15 pt allows.
LINE_HEIGHT = 14.5
BODY_FONT = "宋体"  # SimSun: present wherever Excel or WPS reads Chinese
TITLE_FONT = "黑体"
FONT_SIZE = 10

# The last sheet of a workbook, for identifiers only the data team uses (issue 8: no internal
# identifiers in what a reader sees, "keep technical columns in a separate, last sheet").
TECHNICAL_SHEET = "技术信息（供数据组）"

Sheets = dict[str, tuple[list, list[list]]]

# kind → (places the value is rounded to = what its format shows, number format)
_NUMBER_KINDS = {
    "money": (CENT, XLSX_MONEY),
    "percent": (Decimal("0.0001"), XLSX_PERCENT),   # 0.00% shows a ratio's 4th place
    "quantity": (QUANTITY_PLACES, XLSX_QUANTITY),   # whole → #,##0, else up to 4 places
    "decimal": (QUANTITY_PLACES, XLSX_QUANTITY),
    "integer": (Decimal(1), "0"),
}
COLUMN_KINDS = (*_NUMBER_KINDS, "date", "datetime", "text", "long_text")


class Column(str):
    """A typed header entry: ``Column("未付金额（元）", "money", breach="above")``.

    It *is* its title (a str), so code and tests that read headers as text keep working.
    ``kind``: money / percent / quantity / decimal / integer / date / datetime / text /
    long_text. ``breach``: "below" for a measured figure that fell below a minimum, "above"
    for one above a maximum (formatting's one rounding rule; the cell holds the figure as
    shown). ``width``: a fixed column width (characters), else fitted.
    """

    kind: str
    breach: Breach
    width: float | None

    def __new__(cls, title: str, kind: str = "text", breach: Breach = None,
                width: float | None = None):
        if kind not in COLUMN_KINDS:
            raise ValueError(f"column {title!r}: kind {kind!r} is not one of {COLUMN_KINDS}")
        if breach not in (None, "below", "above"):
            raise ValueError(f"column {title!r}: breach {breach!r} is not 'below', 'above' or None")
        column = super().__new__(cls, title)
        column.kind, column.breach, column.width = kind, breach, width
        return column

    @property
    def title(self) -> str:  # type: ignore[override]  # str.title() is shadowed on purpose
        return str(self)

    def __reduce__(self):  # pickles (XCom, multiprocessing) keep the kind
        return (Column, (str(self), self.kind, self.breach, self.width))


@dataclasses.dataclass(frozen=True)
class BookTitle:
    """The title block above every sheet's header (rows 1–3).

    ``period``: a label ('2025-03' → 2025年3月) or text as it should read. ``profile``: the
    policy profile's Chinese title, or the profile itself (profiles.load_profile()).
    ``generated_at``: default the time of writing; shown in Asia/Shanghai.
    """

    office: str = ""
    title: str = ""
    period: str = ""
    generated_at: dt.datetime | None = None
    profile: str | Mapping | None = None
    # lines under the generation time (a rule the reader must know, who the list is for):
    # each a row of its own above the header
    notes: tuple[str, ...] = ()

    def for_office(self, office: str) -> BookTitle:
        return dataclasses.replace(self, office=office)

    def document(self, sheet_title: str | None = None) -> str:
        """「带量执行报表·一院一档（2025年3月）」: the title line of one sheet."""
        text = self.title or ""
        if sheet_title and sheet_title != self.title:
            text = f"{text}·{sheet_title}" if text else sheet_title
        return f"{text}（{period_zh(self.period)}）" if self.period else text

    def lines(self, sheet_title: str | None = None) -> list[str]:
        """[office, title and period, generated at · policy profile]."""
        from vbp_monitor.core.profiles import profile_title

        generated = self.generated_at or now_local()
        details = [f"生成时间：{datetime_local(_local(generated))}"]
        if self.profile:
            shown = profile_title(dict(self.profile)) if isinstance(self.profile, Mapping) else self.profile
            details.append(f"政策口径：{shown}")
        return [self.office or "", self.document(sheet_title), "　".join(details), *self.notes]


@dataclasses.dataclass(frozen=True)
class SectionRow:
    """A heading row inside a sheet's rows (「配送企业：… 」 above that distributor's orders):
    one bold cell merged across the table."""

    text: str


@dataclasses.dataclass(frozen=True)
class TypedValue:
    """A cell whose kind is its own, not its column's (a column of figures whose unit varies
    by row: 元 in one, % in the next): ``TypedValue(Decimal("0.85"), "percent")``."""

    value: object
    kind: str
    breach: Breach = None


def _local(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is not None:
        return moment.astimezone(_LOCAL_TZ).replace(tzinfo=None)
    return moment


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
            return _local(value)
        return value
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else str(value)
    text = value if isinstance(value, str) else str(value)
    text = _ILLEGAL_CHARACTERS.sub("", text)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


# ------------------------------------------------------------------ typed cells
def _exact_number(value) -> Decimal | None:
    """An exact figure, or None when the value is not one (text, NaN, bool)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, Decimal)):
        number = decimal_of(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.replace(",", "").strip())
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def _as_number(number: Decimal) -> int | float:
    """What openpyxl writes: an int when whole, else the float whose repr is the decimal."""
    if number == number.to_integral_value():
        return int(number)
    return float(str(number))


def _number_cell(number: Decimal, kind: str, breach: Breach) -> tuple[int | float, str]:
    places, number_format = _NUMBER_KINDS[kind]
    shown = rounded(number, places, breach)
    if kind in ("quantity", "decimal") and shown != shown.to_integral_value():
        number_format = XLSX_DECIMAL
    return _as_number(shown), number_format


def typed_cell(value, column: str | None = None) -> tuple[object, str | None]:
    """``(cell value, number format)`` of ``value`` in ``column`` (a Column, or a plain title).

    A plain title guesses from the value: an exact number (Decimal, float) is rounded to 6
    places and shown with up to 4 (#,##0.####, whole numbers #,##0), an int stays as it is,
    a date or datetime becomes a date cell, anything else text. A value the column's kind
    cannot read (a "—", a note) is written as text.
    """
    kind = getattr(column, "kind", None)
    breach = getattr(column, "breach", None)
    if isinstance(value, TypedValue):
        kind, breach, value = value.kind, value.breach, value.value
    if value is None:
        return None, None
    if kind in _NUMBER_KINDS:
        number = _exact_number(value)
        if number is not None:
            return _number_cell(number, kind, breach)
    elif kind == "date" and not isinstance(value, (bool, int, float, Decimal)):
        try:
            return as_date(_local(value) if isinstance(value, dt.datetime) else value), XLSX_DATE
        except ValueError:
            pass
    elif kind == "datetime" and not isinstance(value, (bool, int, float, Decimal)):
        try:
            moment = value if isinstance(value, dt.datetime) else as_datetime(
                value.isoformat() if isinstance(value, dt.date) else value)
            return _local(moment), XLSX_DATETIME
        except ValueError:
            pass
    elif kind is None:
        if isinstance(value, (float, Decimal)) and not isinstance(value, bool):
            number = _exact_number(value)
            if number is not None:
                shown = rounded(number, STORED_PLACES)
                return _as_number(shown), XLSX_QUANTITY if shown == shown.to_integral_value() else XLSX_DECIMAL
        elif isinstance(value, dt.datetime):
            return _local(value), XLSX_DATETIME
        elif isinstance(value, dt.date):
            return value, XLSX_DATE
        elif isinstance(value, (bool, int, dt.time)):
            return value, None
    if isinstance(value, (float, Decimal)) and _exact_number(value) is not None:
        value = decimal_of(value)  # a figure written as text: its shortest form, no float tail
    elif isinstance(value, dt.datetime):
        value = datetime_local(value)
    return safe_cell(value if isinstance(value, str) else str(value)), None


class _Absent:
    """The place of a cell a row does not have (a row shorter than the sheet's widest):
    nothing is written there."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()
# Types whose equal values are always typed alike, whatever the column: a column of only
# these (and no two numeric types, 1 == Decimal(1) == True) is typed once per distinct value.
_ALIKE_TYPES = frozenset({type(None), str, int, dt.date, _Absent})


def _typed_general(value, column) -> tuple[tuple, int]:
    """``(typed cell, width shown)`` of any value in ``column``: typed_cell and _cell_width."""
    if value is None or value is _ABSENT:
        return (value, None), 0
    cell = typed_cell(value, column)
    return cell, 0 if cell[0] is None else _cell_width(*cell)


# A figure read from its text (PostgreSQL's NUMERIC) recurs across the sheets of a run (one
# quantity in many branches' institution files): a number kind's typer keeps the typed cells
# of up to this many texts.
_FIGURE_MEMO = 1 << 16


@functools.cache  # one per kind and breach: its memo of texts serves every such column
def _figure_typer(kind: str, breach: Breach):
    """_column_typer of a number column (``kind`` one of _NUMBER_KINDS)."""
    column = Column(kind, kind, breach=breach)
    places, number_format = _NUMBER_KINDS[kind]
    # formatting.rounded's rule: toward the side that does not hide a breach
    mode = {"below": ROUND_FLOOR, "above": ROUND_CEILING}.get(breach, ROUND_HALF_UP)
    fraction_format = XLSX_DECIMAL if kind in ("quantity", "decimal") else number_format
    # _cell_width of the kind's cells (an integer's format "0" shows its digits)
    width_of = {"money": "{:,.2f}".format, "percent": lambda figure: f"{figure * 100:.2f}%",
                "integer": str}.get(kind, "{:,}".format)

    def typed(value):
        if type(value) is Decimal and value.is_finite():
            shown = value.quantize(places, rounding=mode)  # = formatting.rounded
            if shown == shown.to_integral_value():
                figure: int | float = int(shown)
                cell = (figure, number_format)
            else:  # (float() of a Decimal reads its str: the float whose repr it is)
                figure = float(shown)
                cell = (figure, fraction_format)
            return cell, len(width_of(figure))
        return _typed_general(value, column)

    def read(text: str):
        # a figure as its text, read as typed_cell reads it; anything else (a "—", "1,234",
        # "NaN") goes the general way
        try:
            number = Decimal(text)
        except (ArithmeticError, ValueError):
            return _typed_general(text, column)
        return typed(number) if number.is_finite() else _typed_general(text, column)

    memo: dict[str, tuple] = {}

    def typer(value):
        if type(value) is str:  # (no Decimal made of each cell: one of each distinct text)
            cell = memo.get(value)
            if cell is None:
                if len(memo) >= _FIGURE_MEMO:
                    memo.clear()
                cell = memo[value] = read(value)
            return cell
        return typed(value)
    return typer


def _column_typer(column):
    """``value → (typed cell, width shown)`` of one column: ``typed_cell`` and
    ``_cell_width``, the values a column commonly holds (a Decimal or the text of a figure in
    a number column, a date in a date column, printable text in a text column, what the
    database gives a plain-title column) without typed_cell's checks of every other kind of
    value."""
    kind = getattr(column, "kind", None)

    def general(value):
        return _typed_general(value, column)

    if kind in _NUMBER_KINDS:
        typer = _figure_typer(kind, getattr(column, "breach", None))
    elif kind == "date":
        def typer(value):
            if type(value) is dt.date:
                return (value, XLSX_DATE), len("2025-01-01")
            return general(value)
    elif kind in ("text", "long_text"):
        def typer(value):
            if type(value) is str and value.isprintable() and not value.startswith(FORMULA_TRIGGERS):
                # printable: no line breaks (ASCII: as wide as long, codes and ids need no memo)
                return (value, None), len(value) if value.isascii() else _text_width(value)
            return general(value)
    elif kind is None:
        def typer(value):
            kind_of = type(value)
            if kind_of is Decimal and value.is_finite():
                shown = value.quantize(STORED_PLACES, rounding=ROUND_HALF_UP)
                if shown == shown.to_integral_value():
                    cell = (int(shown), XLSX_QUANTITY)
                else:
                    cell = (float(shown), XLSX_DECIMAL)
                return cell, len(f"{cell[0]:,}")
            if kind_of is str and value.isprintable() and not value.startswith(FORMULA_TRIGGERS):
                return (value, None), _text_width(value)
            if kind_of is int:
                return (value, None), len(str(value))
            if kind_of is dt.date:
                return (value, XLSX_DATE), len("2025-01-01")
            return general(value)
    else:
        typer = general
    return typer


@dataclasses.dataclass
class _TypedColumn:
    """One column of a sheet's body rows, typed: ``cells[keys[r]]`` is row r's typed cell
    ``(value, number format)``. A column of values typed alike when equal (``_ALIKE_TYPES``,
    Decimals in a number column) is keyed by value (a Decimal by its text), so each distinct
    value is typed, measured and later written once (names, codes, dates and figures repeat
    down a column); any other column is keyed by row."""

    keys: Sequence  # per row
    cells: dict
    width: int  # its widest cell as shown (``_cell_width``)


def _typed_columns(body_rows: list, columns: list) -> list[_TypedColumn]:
    """The body rows (no SectionRow) typed column by column, as ``typed_cell`` types them.
    A row shorter than ``columns`` has ``_ABSENT`` cells at its end."""
    if not set(map(len, body_rows)) <= {len(columns)}:
        body_rows = [[*row, *[_ABSENT] * (len(columns) - len(row))] for row in body_rows]
    values_of = list(zip(*body_rows)) if body_rows else [() for _ in columns]
    typed: list[_TypedColumn] = []
    for column, values in zip(columns, values_of, strict=True):
        typer = _column_typer(column)
        figures = getattr(column, "kind", None) in (None, *_NUMBER_KINDS)
        kinds = set(map(type, values))
        keys: Sequence
        if figures and kinds <= {Decimal, type(None)}:
            # a Decimal's str is exact (equal texts: equal Decimals, to the last digit) and
            # hashes in a fraction of the Decimal's time
            keys = list(map(str, values))
        elif kinds <= _ALIKE_TYPES | ({Decimal} if figures else set()) and not {int, Decimal} <= kinds:
            keys = values
        else:
            keys = range(len(values))
        try:  # key → value, in order of first appearance (a value its own key: value → None)
            distinct = dict.fromkeys(values) if keys is values else dict(zip(keys, values))
        except TypeError:  # a signalling NaN has no hash
            keys = range(len(values))
            distinct = dict(zip(keys, values))
        # (cell, width shown) of each distinct value
        typed_values = list(map(typer, distinct if keys is values else distinct.values()))
        cells = dict(zip(distinct, map(itemgetter(0), typed_values), strict=True))
        typed.append(_TypedColumn(keys, cells, max(map(itemgetter(1), typed_values), default=0)))
    return typed


def _shown_text(value, number_format: str | None) -> str:
    """The text a reader sees in the cell (for column widths)."""
    if value is None:
        return ""
    if number_format == XLSX_MONEY:
        return f"{value:,.2f}"
    if number_format == XLSX_PERCENT:
        return f"{value * 100:.2f}%"
    if number_format in (XLSX_QUANTITY, XLSX_DECIMAL) and isinstance(value, (int, float)):
        return f"{value:,}"
    if number_format == XLSX_DATETIME:
        return "2025-01-01 00:00:00"
    if number_format == XLSX_DATE:
        return "2025-01-01"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _display_width(value) -> int:
    """Width of the longest line, CJK characters counted double."""
    if value is None:
        return 0
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, dt.datetime):
        text = "2025-01-01 00:00:00"
    else:
        text = str(value)
    return max((_text_width(line) for line in text.splitlines()), default=0)


@functools.lru_cache(maxsize=65536)  # names and labels repeat down a column
def _text_width(text: str) -> int:
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _lines_needed(text: str, width: float) -> int:
    usable = max(1.0, width - 1.5)
    return sum(max(1, math.ceil(_text_width(line) / usable)) for line in str(text).splitlines() or [""])


def _sheet_title(title: str, taken: set[str]) -> str:
    base = _SHEET_TITLE_FORBIDDEN.sub("_", str(title)).strip("'") or "Sheet"
    base = base[:31]
    candidate, n = base, 2
    while candidate.lower() in taken:
        suffix = f"({n})"
        candidate, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(candidate.lower())
    return candidate


# ------------------------------------------------------------------ one sheet
class _Styles:
    """The workbook's few styles (one object each: openpyxl shares them)."""

    def __init__(self):
        from openpyxl.styles import Alignment, Border, Font, PatternFill, Side

        thin = Side(style="thin", color="808080")
        self.border = Border(left=thin, right=thin, top=thin, bottom=thin)
        self.body = Font(name=BODY_FONT, size=FONT_SIZE)
        self.header = Font(name=BODY_FONT, size=FONT_SIZE, bold=True)
        self.office = Font(name=BODY_FONT, size=12)
        self.title = Font(name=TITLE_FONT, size=16, bold=True)
        self.details = Font(name=BODY_FONT, size=9, color="404040")
        self.note = Font(name=BODY_FONT, size=FONT_SIZE, bold=True)
        self.section_fill = PatternFill("solid", fgColor="F2F2F2")
        self.header_fill = PatternFill("solid", fgColor="E7E6E6")
        self.header_alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        self.plain = Alignment(vertical="center")
        self.wrapped = Alignment(vertical="center", wrap_text=True)
        self.title_alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        self.left_alignment = Alignment(horizontal="left", vertical="center", wrap_text=True)
        self._body_ids: dict[tuple, int] = {}

    def body_id(self, sheet, number_format: str | None, wrapped: bool) -> int:
        """The workbook's style id of a data cell (made once per kind: openpyxl hashes every
        style it is given, which costs more than the rest of writing a large sheet)."""
        key = (number_format, wrapped)
        made = self._body_ids.get(key)
        if made is None:
            from openpyxl.cell import Cell

            cell = Cell(sheet)
            cell.font, cell.border = self.body, self.border
            cell.alignment = self.wrapped if wrapped else self.plain
            if number_format:
                cell.number_format = number_format
            made = self._body_ids[key] = cell.style_id
        return made


def _wrapped_line_widths(text: str, width: float) -> list[int]:
    """Widths of the lines ``text`` wraps onto in a column ``width`` wide (greedy, by character)."""
    lines = [0]
    for character in text:
        step = _text_width(character)
        if lines[-1] and lines[-1] + step > width:
            lines.append(0)
        lines[-1] += step
    return lines


def _header_fitted(header: str, width: int) -> int:
    """The least width ≥ ``width`` on which ``header`` wraps onto ≤ HEADER_LINES lines and
    never leaves one character alone on its last line (「医疗机构代/码」)."""
    for candidate in range(width, width + 7):
        # what a column holds differs a little by program: ~1.05 × width in Excel/WPS,
        # ~1.1 × width in LibreOffice (units of CJK = 2); the header must read well in both
        wrapped = [_wrapped_line_widths(header, candidate * factor + offset)
                   for factor, offset in ((1.05, 0.15), (1.1, 0))]
        if all(len(lines) == 1 or (len(lines) <= HEADER_LINES and lines[-1] > 2) for lines in wrapped):
            return candidate
    per_line = math.ceil(_text_width(header) / HEADER_LINES)
    return max(width, per_line + per_line % 2 + 3)


def _cell_width(value, number_format: str | None) -> int:
    """``_display_width(_shown_text(value, number_format))``, the common cases first."""
    kind = type(value)
    if number_format is None:
        if kind is str:
            if value.isascii() and value.isprintable():
                return len(value)
            return max((_text_width(line) for line in value.splitlines()), default=0)
    elif kind is int or kind is float:
        if number_format == XLSX_QUANTITY or number_format == XLSX_DECIMAL:
            return len(f"{value:,}")
        if number_format == XLSX_MONEY:
            return len(f"{value:,.2f}")
        if number_format == XLSX_PERCENT:
            return len(f"{value * 100:.2f}%")
    elif number_format == XLSX_DATE:
        return len("2025-01-01")
    return _display_width(_shown_text(value, number_format))


def _column_widths(columns: list, contents: list[int]) -> tuple[list[float], list[bool]]:
    """(width, wraps) per column from its widest cell as shown (``contents``): content
    fitted, header wrapped onto ≤ HEADER_LINES lines."""
    widths: list[float] = []
    wraps: list[bool] = []
    for column, content in zip(columns, contents, strict=True):
        kind = getattr(column, "kind", None)
        wrap = kind == "long_text" or content > TEXT_WRAP_WIDTH
        fixed = getattr(column, "width", None)
        if fixed:
            width = fixed
        else:
            width = _header_fitted(str(column or ""), max(MIN_COLUMN_WIDTH, min(content, TEXT_WRAP_WIDTH)) + 2)
        widths.append(min(MAX_COLUMN_WIDTH, width))
        wraps.append(wrap)
    return widths, wraps


def _fill_sheet(sheet, header: list, rows: list[list], title: BookTitle | None, styles: _Styles) -> None:
    """Fill a write-only sheet: everything above the rows (widths, frozen panes) is set
    before the first row goes out; the rows go to the sheet's file as XML text as they are
    made (``_RowStream``), so a large sheet is never held as cells, and a cell costs a few
    string operations instead of an openpyxl Cell and an XML element."""
    from openpyxl.cell import Cell
    from openpyxl.utils import get_column_letter

    body_rows = [row for row in rows if not isinstance(row, SectionRow)]
    width_of_rows = max([len(header), *map(len, body_rows)], default=0)
    columns = list(header) + [None] * (width_of_rows - len(header))
    typed = _typed_columns(body_rows, columns)
    widths, wraps = _column_widths(columns, [column.width for column in typed])
    letters = [get_column_letter(index) for index in range(1, len(columns) + 1)]
    last_letter = letters[-1] if letters else "A"
    title_lines = title.lines(sheet.title) if title is not None else []
    header_row = len(title_lines) + 1
    last_row = header_row + len(rows)

    for letter, width in zip(letters, widths, strict=True):
        sheet.column_dimensions[letter].width = width
    sheet.freeze_panes = f"A{header_row + 1}"
    if header:
        sheet.auto_filter.ref = f"A{header_row}:{get_column_letter(len(header))}{last_row}"
    _print_setup(sheet, title, header_row, f"A1:{last_letter}{last_row}")
    stream = _RowStream(sheet)  # writes everything above the rows: set before this line

    def style_id(**style) -> int:
        cell = Cell(sheet)
        for name, value in style.items():
            setattr(cell, name, value)
        return cell.style_id

    if title is not None:
        notes = len(title_lines) - 3
        fonts = (styles.office, styles.title, styles.details, *[styles.note] * notes)
        aligns = (styles.left_alignment, styles.title_alignment, *[styles.left_alignment] * (1 + notes))
        table_width = sum(widths) or MIN_COLUMN_WIDTH
        for row_number, (text, font, align) in enumerate(zip(title_lines, fonts, aligns, strict=True), 1):
            if len(columns) > 1:
                sheet.merged_cells.add(f"A{row_number}:{last_letter}{row_number}")
            lines = _lines_needed(text, table_width * FONT_SIZE / font.sz) if text else 1
            style = style_id(font=font, alignment=align)
            stream.row(row_number, lines * font.sz * 1.45 + 4, [_cell_xml(f"A{row_number}", style, safe_cell(text))])

    if header:
        header_lines = 1
        header_style = style_id(font=styles.header, alignment=styles.header_alignment, border=styles.border,
                                fill=styles.header_fill)
        header_cells = []
        for index, column in enumerate(header):
            header_cells.append(_cell_xml(f"{letters[index]}{header_row}", header_style, safe_cell(str(column))))
            header_lines = max(header_lines, _lines_needed(str(column), widths[index]))
        stream.row(header_row, header_lines * LINE_HEIGHT + 5, header_cells)

    # The body cells' styles are made (added to the workbook) in the order the cells first
    # use them, row by row as a cell-by-cell writer would: that order numbers them in styles.xml.
    positions = [number for number, row in enumerate(rows) if not isinstance(row, SectionRow)]
    first_uses: list[tuple[int, int, tuple | None]] = []
    # a cell's style key: (number format, wrapped); the cells of a column that wraps nothing
    # and of rows that all reach it are keyed by their number format alone
    padded = min(map(len, body_rows), default=len(columns)) < len(columns)
    style_keys: list[dict | None] = []
    for index, column in enumerate(typed):
        if wraps[index] or padded:
            keys_of: dict = {key: (number_format, wraps[index] and isinstance(value, str))
                             for key, (value, number_format) in column.cells.items() if value is not _ABSENT}
            style_keys.append(keys_of)
            # each style key's first cell (of the distinct cells in order of first appearance:
            # the first of equal style keys is the one a dict keeps of them reversed)
            first_keys = dict(zip(reversed(keys_of.values()), reversed(keys_of)))
        else:
            style_keys.append(None)
            first_keys = {(number_format, False): key for number_format, key in zip(
                map(itemgetter(1), reversed(column.cells.values())), reversed(column.cells))}
        first_uses.extend((positions[column.keys.index(key)], index, style_key)
                          for style_key, key in first_keys.items())
    section_style = None
    if len(positions) < len(rows):
        first_section = next(number for number, row in enumerate(rows) if isinstance(row, SectionRow))
        first_uses.append((first_section, -1, None))
    body_ids: dict[tuple, int] = {}
    for _, _, style_key in sorted(first_uses, key=lambda use: use[:2]):
        if style_key is None:
            section_style = style_id(font=styles.header, alignment=styles.left_alignment,
                                     border=styles.border, fill=styles.section_fill)
        else:
            body_ids[style_key] = styles.body_id(sheet, *style_key)

    # Each distinct cell of a column is written once, as UTF-8: '"' (the end of its reference)
    # and its _cell_body (a figure's inline, without the call); a row is its pieces joined,
    # with no Python step per row or per cell.
    cell_columns = []
    line_columns = []
    for index, (column, keys_of) in enumerate(zip(typed, style_keys, strict=True)):
        if keys_of is None:  # (the style by the number format: the cell is not wrapped)
            ids = {number_format: style for (number_format, wrapped), style in body_ids.items() if not wrapped}
            bodies = {key: _figure_body(ids[number_format], value) if type(value) is int or type(value) is float
                      else ('"' + _cell_body(ids[number_format], value)).encode()
                      for key, (value, number_format) in column.cells.items()}
        else:
            bodies = {key: ('"' + _cell_body(body_ids[keys_of[key]], value)).encode() if value is not _ABSENT else b""
                      for key, (value, _) in column.cells.items()}
        cell_columns.append(map(bodies.__getitem__, column.keys))
        if wraps[index]:
            lines_of = {key: _lines_needed(str(value), widths[index]) if isinstance(value, str) else 1
                        for key, (value, _) in column.cells.items()}
            line_columns.append(map(lines_of.__getitem__, column.keys))
    row_lines: Iterator[int] | None
    if not line_columns:
        row_lines = None  # every body row one line high
    elif len(line_columns) == 1:
        row_lines = line_columns[0]
    else:
        row_lines = map(max, *line_columns)
    heights: dict[int, bytes] = {}

    def height(lines: int) -> bytes:
        if lines not in heights:
            heights[lines] = _xml_number(lines * LINE_HEIGHT + 3).encode()
        return heights[lines]

    row_number = header_row + 1
    # runs of body rows of one length between section rows: each run is written as the
    # pieces of its rows, taken in turn from iterators over the rows (zip), joined
    for length, run in itertools.groupby(rows, key=lambda row: -1 if isinstance(row, SectionRow) else len(row)):
        if length < 0:
            for section in cast(Iterable[SectionRow], run):
                if len(columns) > 1:
                    sheet.merged_cells.add(f"A{row_number}:{last_letter}{row_number}")
                lines = _lines_needed(section.text, sum(widths) or MIN_COLUMN_WIDTH)
                stream.row(row_number, lines * LINE_HEIGHT + 5,
                           [_cell_xml(f"A{row_number}", section_style, safe_cell(section.text))])
                row_number += 1
            continue
        count = sum(1 for _ in run)
        numbers = list(map(b"%d".__mod__, range(row_number, row_number + count)))
        # '<row r="7" ht="17.5" customHeight="1">', '<c r="A7"' + body, '<c r="B7"' + body, …,
        # '</row>' in pieces: the row number, once for the row and once a cell
        pieces: list[Iterator[bytes]] = [
            itertools.repeat(b'<row r="'), iter(numbers), itertools.repeat(b'" ht="'),
            itertools.repeat(height(1)) if row_lines is None else map(height, row_lines),
            itertools.repeat(b'" customHeight="1">')]
        for index, cells in enumerate(cell_columns):
            if index < length:
                pieces += [itertools.repeat(f'<c r="{letters[index]}'.encode()), iter(numbers), cells]
            else:  # (the cells past the row's end: absent, written as nothing)
                pieces.append(cells)
        pieces.append(itertools.repeat(b"</row>"))
        # (zip stops at the end of ``numbers``, its second iterable, taking nothing more of the others)
        stream.rows(zip(*pieces))
        row_number += count
    stream.flush()


# ------------------------------------------------------------------ rows as XML text
_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_NEEDS_ESCAPE = re.compile(r"[&<>\r]")
MAX_CELL_TEXT = 32767  # what a cell holds (openpyxl cuts a longer text there too)
_ROW_CHUNK = 4096  # cells joined into one write


def _xml_number(value) -> str:
    return f"{value:.16g}"  # openpyxl's own rendering of a number (compat.safe_string: "%.16g")


@functools.lru_cache(maxsize=4096)  # a sheet's dates repeat down its columns
def _date_serial(day: dt.date) -> str:
    from openpyxl.utils.datetime import to_excel

    return _xml_number(to_excel(day))


# (style id, figure) → its cell's _cell_body as _fill_sheet writes it: a figure recurs across
# the sheets of a run (one amount in many branches' institution files), kept for so many
_FIGURE_BODIES: dict[tuple[int, int | float], bytes] = {}
_FIGURE_BODIES_KEPT = 1 << 16


def _figure_body(style: int, figure: int | float) -> bytes:
    """'"' and ``_cell_body(style, figure)`` of an int or float (equal ones alike: "%.16g" of
    1 and 1.0 is 1; but not 0 and -0.0, equal too: a zero is not kept)."""
    if not figure:
        return f'" s="{style}" t="n"><v>{figure:.16g}</v></c>'.encode()
    key = (style, figure)
    body = _FIGURE_BODIES.get(key)
    if body is None:
        if len(_FIGURE_BODIES) >= _FIGURE_BODIES_KEPT:
            _FIGURE_BODIES.clear()
        body = _FIGURE_BODIES[key] = f'" s="{style}" t="n"><v>{figure:.16g}</v></c>'.encode()
    return body


def _cell_xml(ref: str, style: int, value) -> str:
    """One ``<c>`` element as openpyxl writes it (inline strings, dates as serial numbers)."""
    return f'<c r="{ref}"{_cell_body(style, value)}'


def _cell_body(style: int, value) -> str:
    """A ``<c>`` element after its reference (``<c r="B7"``): the same for every cell of
    equal style and value."""
    if value is None:
        return f' s="{style}"/>'
    kind = type(value)
    if kind is str:
        if not value:  # openpyxl writes an empty text as an empty cell (read back: None)
            return f' s="{style}" t="inlineStr"/>'
        text = value[:MAX_CELL_TEXT]
        space = ' xml:space="preserve"' if text != text.strip() else ""
        if _NEEDS_ESCAPE.search(text):
            text = text.translate(_XML_ESCAPES)
        return f' s="{style}" t="inlineStr"><is><t{space}>{text}</t></is></c>'
    if kind is bool:
        return f' s="{style}" t="b"><v>{int(value)}</v></c>'
    if kind is int or kind is float:  # (_xml_number's format, without its call)
        return f' s="{style}" t="n"><v>{value:.16g}</v></c>'
    if kind is dt.date:
        return f' s="{style}" t="n"><v>{_date_serial(value)}</v></c>'
    if isinstance(value, (dt.date, dt.time)):
        from openpyxl.utils.datetime import to_excel

        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            raise TypeError("Excel does not support time zones in datetimes")
        return f' s="{style}" t="n"><v>{_xml_number(to_excel(value))}</v></c>'
    if isinstance(value, bool):
        return _cell_body(style, bool(value))
    if isinstance(value, (int, float)):  # a subclass of int or float
        return _cell_body(style, int(value) if isinstance(value, int) else float(value))
    return _cell_body(style, str(value))


@functools.cache
def _sheet_writer_class():
    """openpyxl's worksheet writer, writing its elements into a file it holds open, so that
    rows rendered as XML text can go into the same file between them."""
    from openpyxl.worksheet._writer import WorksheetWriter
    from openpyxl.xml.constants import SHEET_MAIN_NS
    from openpyxl.xml.functions import tostring

    class TextRowsWriter(WorksheetWriter):
        handle = None

        def get_stream(self):
            with open(self.out, "wb") as handle:
                self.handle = handle
                handle.write(f'<worksheet xmlns="{SHEET_MAIN_NS}">'.encode())
                try:
                    while True:
                        element = (yield)
                        if element is True:  # openpyxl's own rows: never asked for here
                            raise RuntimeError("the rows of this sheet are written as text")
                        if element is not None:
                            handle.write(tostring(element))
                except GeneratorExit:
                    pass
                handle.write(b"</worksheet>")

    return TextRowsWriter


class _RowStream:
    """The rows of a write-only sheet, as XML text, between openpyxl's own elements.

    Made once everything above the rows is set (properties, views, columns): it has
    openpyxl write those, then opens ``sheetData``; closing the sheet (when the workbook is
    saved) closes ``sheetData`` and lets openpyxl write what follows (filter, merged cells,
    page set-up).
    """

    def __init__(self, sheet):
        writer = sheet._writer = _sheet_writer_class()(sheet)
        writer.write_top()
        self._handle = writer.handle
        self._handle.write(b"<sheetData>")
        self._pending: list[str] = []
        sheet._rows = self._closing()
        next(sheet._rows)

    def _closing(self):
        try:
            yield
        except GeneratorExit:
            self.flush()
            self._handle.write(b"</sheetData>")

    def row(self, number: int, height: float, cells: list[str]) -> None:
        self._pending.append(f'<row r="{number}" ht="{_xml_number(height)}" customHeight="1">')
        self._pending.extend(cells)
        self._pending.append("</row>")
        if len(self._pending) > _ROW_CHUNK:
            self.flush()

    def rows(self, rows: Iterator[tuple[bytes, ...]]) -> None:
        """Whole ``<row>`` elements, each as its pieces of XML (UTF-8), a few hundred at a time."""
        self.flush()
        while batch := list(itertools.islice(rows, _ROW_CHUNK // 16)):
            self._handle.write(b"".join(itertools.chain.from_iterable(batch)))

    def flush(self) -> None:
        if self._pending:
            self._handle.write("".join(self._pending).encode("utf-8"))
            self._pending.clear()


def _print_setup(sheet, title: BookTitle | None, header_row: int, area: str) -> None:
    """A4 landscape, one page wide (as many tall as needed), header row on every page."""
    from openpyxl.worksheet.page import PageMargins
    from openpyxl.worksheet.worksheet import Worksheet

    sheet.page_setup.paperSize = Worksheet.PAPERSIZE_A4
    sheet.page_setup.orientation = Worksheet.ORIENTATION_LANDSCAPE
    sheet.page_setup.fitToWidth = 1
    sheet.page_setup.fitToHeight = 0
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    sheet.print_options.horizontalCentered = True
    sheet.page_margins = PageMargins(left=0.4, right=0.4, top=0.55, bottom=0.6, header=0.3, footer=0.3)
    sheet.print_title_rows = f"{header_row}:{header_row}"
    sheet.print_area = area
    sheet.oddFooter.center.text = "第 &P 页 / 共 &N 页"
    sheet.oddFooter.center.size = 9
    if title is not None:
        # A loose page still says what it belongs to ("&" is a code in header/footer text).
        belongs_to = "　".join(filter(None, (title.office, title.document(sheet.title))))
        sheet.oddFooter.left.text = belongs_to.replace("&", "&&")
        sheet.oddFooter.left.size = 9


def _ordered(sheets: Sheets) -> list[tuple[str, tuple]]:
    """The technical sheet, if any, goes last."""
    items = list(sheets.items())
    return [item for item in items if item[0] != TECHNICAL_SHEET] + [
        item for item in items if item[0] == TECHNICAL_SHEET]


def _workbook(sheets: Sheets, title: BookTitle | None = None):
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)  # rows stream to the file: no sheet held as cells
    taken: set[str] = set()
    styles = _Styles()
    if title is not None and title.generated_at is None:
        title = dataclasses.replace(title, generated_at=now_local())  # one time for every sheet
    for sheet_title, (header, rows) in _ordered(sheets):
        sheet = workbook.create_sheet(_sheet_title(sheet_title, taken))
        _fill_sheet(sheet, list(header), list(rows), title, styles)
    if not workbook.worksheets:
        workbook.create_sheet("Sheet")
    return workbook


def write_xlsx(path: Path, sheets: Sheets, title: BookTitle | None = None) -> Path:
    """Write sheets ``{title: (header, rows)}`` to ``path``; every text goes through safe_cell.

    A header entry is a plain title or a ``Column`` (typed: number formats, dates, wrapped
    long text). ``title``: the title block above each sheet's header (rows 1–3). Every
    sheet has a bold, frozen header with a filter, fitted widths and a page set-up that
    prints one page wide on A4 landscape.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(_workbook(sheets, title), path)
    return path


# Deflate level of the workbook's parts: a fast level deflates a province's large sheets in
# a quarter of the time of zlib's default (6) for files about a fifth larger; the parts
# themselves (the XML a reader unpacks) are the same at any level.
ZIP_LEVEL = 2


def _save(workbook, path: Path) -> None:
    """openpyxl's ``Workbook.save`` (``writer.excel.save_workbook``) at ``ZIP_LEVEL``."""
    from zipfile import ZIP_DEFLATED, ZipFile

    from openpyxl.writer.excel import ExcelWriter

    archive = ZipFile(path, "w", ZIP_DEFLATED, allowZip64=True, compresslevel=ZIP_LEVEL)
    workbook.properties.modified = dt.datetime.now(tz=dt.UTC).replace(tzinfo=None)
    ExcelWriter(workbook, archive).save()


def remove_stale_branch_files(folder: Path, prefix: str, period_label: str, kept: set[str],
                              scope_branch: str | None = None, suffix: str = ".xlsx") -> None:
    """Delete ``<prefix>_<branch>_<period><suffix>`` files a rerun no longer writes.

    A rerun after corrections may leave a branch with nothing to list; its old file must not
    linger (or be mailed). Within an operator's branch scope only that branch's file goes.
    """
    if not folder.is_dir():
        return
    head, tail = f"{prefix}_", f"_{safe_name_part(period_label)}{suffix}"
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


def write_branch_files(folder: Path, prefix: str, period_label: str,
                       workbooks: Mapping[str, Sheets] | Iterable[tuple[str, Sheets]],
                       scope_branch: str | None = None,
                       title: BookTitle | Mapping[str, BookTitle] | None = None) -> dict[str, list[Path]]:
    """The one way to write per-branch (or per-audience) workbooks of a run.

    ``workbooks`` maps an audience (branch code, or the city's) to its sheets, or yields
    ``(audience, sheets)`` pairs (each audience once), so that only one audience's rows are
    held at a time. Each is written to ``branch_file_path``; the run's earlier files that
    this run no longer writes are removed (within an operator's branch scope, only that
    branch's). ``title``: one title block for every file, or ``{audience: BookTitle}``
    (each branch its own office). Returns ``{audience: [path]}`` by audience, ready to attach.
    """
    pairs = sorted(workbooks.items()) if isinstance(workbooks, Mapping) else workbooks
    written: dict[str, list[Path]] = {}
    for audience, sheets in pairs:
        book_title = title.get(audience) if isinstance(title, Mapping) else title
        written[audience] = [write_xlsx(branch_file_path(folder, prefix, audience, period_label), sheets,
                                        title=book_title)]
    remove_stale_branch_files(Path(folder), prefix, period_label,
                              kept={safe_name_part(a) for a in written}, scope_branch=scope_branch)
    return dict(sorted(written.items()))
