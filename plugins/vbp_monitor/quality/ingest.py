"""Load the platform's exports from the landing folder (data-contract.md › Inbound).

For every contract file present, in ``contract.LOAD_ORDER``:

1. read it as text (CSV in UTF-8, UTF-8 with BOM or GB18030; or the first sheet of an XLSX);
2. reject it whole when its header lacks a contract column (one DATA_QUALITY alert);
3. in one transaction, ``CHUNK_ROWS`` rows at a time (memory is bounded by the chunk, not
   the file): validate the chunk with the file's GX suite (``vbp_monitor.quality.expectations``),
   quarantine the rows that broke a row-level expectation (the file's earlier quarantine rows
   are replaced) and upsert the good rows (typed, derived) by primary key; a failed
   file-level expectation rolls everything back and rejects the file whole;
4. refresh what depends on the table (work calendar, cycle-month calendar, monthly facts
   cache: of the orders, only the months whose lines were loaded or moved away from) and
   write the file's DATA_QUALITY alert (or resolve the earlier one of the same day), in the
   same transaction.

What the suite judges over the whole file stays whole: each chunk is judged on the keys it
repeats itself, which are the file's repeats unless a key is in two chunks; then the load is
rolled back and done again with the keys the whole file repeats, found in one pass over them
first (``duplicate_keys``, ``presolve``). A suite with a file-wide figure (the branches' one
city row, the agreements' shared periods, a compound key) reads its file in one chunk. The
outcome is the one of validating the file at once.

Re-ingesting the same files changes nothing. Heavy imports stay inside functions.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Collection, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from vbp_monitor.core import config
from vbp_monitor.model import contract
from vbp_monitor.quality import expectations as suites

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

EXTENSIONS = (".csv", ".xlsx")
QUARANTINE_CHUNK_ROWS = 2000
# a field may be this long in a CSV (csv's default, 128 KiB, raised an error that stopped the
# ingest); a text longer than an XLSX cell (MAX_TEXT_CHARS) is then quarantined with its row
MAX_CSV_FIELD_CHARS = 64 * 1024 * 1024
MAX_TEXT_CHARS = 32_767
PLAUSIBLE_YEARS = (2000, 2099)  # dates and times outside are typing errors (0001, 1900, 2999, 9999)
# A file is read, validated, typed and loaded this many rows at a time (memory is bounded by
# the chunk, not the file), unless its suite has a figure of the whole file.
CHUNK_ROWS = 100_000
KEY_BATCH_ROWS = 100_000
READ_BLOCK_BYTES = 1 << 20
MAX_EXAMPLES = 5  # example keys in a file's alert
FACTS_SOURCES = {"orders", "products", "batches", "agreements"}
# the one whose load clears only the facts months it changed (of its order_date)
MONTHLY_FACTS_SOURCE = "orders"


class ContractFileError(ValueError):
    """A landing file that cannot be read as a contract file at all."""


# ---------------------------------------------------------------- reading
def find_contract_file(landing: Path, name: str) -> Path | None:
    """``NAME.csv`` or ``NAME.xlsx`` (in any letter case: ``ORDERS.CSV``, as a Windows export
    names it); when both are there the newer one (CSV on a tie)."""
    wanted = {f"{name}{ext}" for ext in EXTENSIONS}
    found = sorted(path for path in landing.iterdir() if path.name.lower() in wanted and path.is_file())
    if not found:
        return None
    if len(found) > 1:
        log.warning("both %s present: using the newer one", " and ".join(p.name for p in found))
        found.sort(key=lambda p: (-p.stat().st_mtime, p.suffix.lower() != ".csv"))
    return found[0]


def decode_csv(data: bytes) -> str:
    """UTF-8 (with or without BOM) strictly, else GB18030 (platform exports are often GBK).

    A file that is neither raises ``ContractFileError`` (without the file's name) naming the
    line and column of the first byte that does not read: a UTF-16 file, or a UTF-8 file with
    one row in GB18030 or Latin-1 (most of its lines with non-ASCII text read as UTF-8: decoding
    it all as GB18030 would garble the good rows)."""
    import codecs

    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ContractFileError("第 1 行开头是 UTF-16 的字节顺序标记（BOM）：数据契约只接受 UTF-8（可带 BOM）"
                                "或 GB18030 编码，请另存为 UTF-8 后重新投递")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        utf8_error = error
    utf8_lines = bad_lines = 0
    for line in data.splitlines():
        if not line.isascii():
            try:
                line.decode("utf-8-sig")
                utf8_lines += 1
            except UnicodeDecodeError:
                bad_lines += 1
    if utf8_lines > bad_lines:
        raise _undecodable(data, utf8_error.start, "UTF-8")
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError as error:
        raise _undecodable(data, error.start, "UTF-8 或 GB18030") from None


def _undecodable(data: bytes, position: int, encodings: str) -> ContractFileError:
    """The error naming the line and column (by counting separators) of a byte that does not read."""
    line_start = max(data.rfind(b"\n", 0, position), data.rfind(b"\r", 0, position)) + 1
    line = data.count(b"\n", 0, position) + 1 if b"\n" in data else data.count(b"\r", 0, position) + 1
    header = data.splitlines()[0].decode("ascii", "replace").lstrip("\ufeff").split(",") if data else []
    field_index = data[line_start:position].count(b",")
    where = (f"第 {line} 行 {header[field_index].strip()} 列" if field_index < len(header)
             else f"第 {line} 行第 {field_index + 1} 个字段")
    return ContractFileError(
        f"{where}有无法按 {encodings} 解码的字节 0x{data[position]:02X}：整份文件须为 UTF-8（可带 BOM）"
        f"或 GB18030 编码，不能混用")


def csv_encoding(path: Path) -> str:
    """``utf-8-sig`` when the whole file decodes strictly as UTF-8 (with or without BOM),
    streamed without holding the file; otherwise ``decode_csv`` judges the bytes (GB18030, or
    ``ContractFileError`` naming where the file does not read)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    try:
        with open(path, "rb") as handle:
            while block := handle.read(READ_BLOCK_BYTES):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        try:
            decode_csv(path.read_bytes())
        except ContractFileError as error:
            raise ContractFileError(f"{path.name} {error}") from None
        return "gb18030"
    return "utf-8-sig"


def _csv_rows(path: Path) -> Iterator[list[str]]:
    import csv

    csv.field_size_limit(MAX_CSV_FIELD_CHARS)
    with open(path, encoding=csv_encoding(path), newline="") as handle:
        reader = csv.reader(handle)
        try:
            yield from reader
        except csv.Error as error:
            raise ContractFileError(f"{path.name} 第 {reader.line_num} 行无法按 CSV 读取（{error}）") from None


def _cell_text(value, kind: str | None) -> str:
    """An XLSX cell as the text the CSV export would carry."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        if kind == contract.DATE and value.time() == dt.time():
            return value.date().isoformat()
        return value.strftime(suites.TIMESTAMP_FORMAT)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        # a computed cell may carry binary noise (0.1 + 0.2): 8 decimals is beyond the contract's 4-6
        return str(int(value)) if value.is_integer() else repr(round(value, 8))
    return str(value)


def _xlsx_rows(path: Path, spec: contract.FileSpec) -> Iterator[list[str]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # not a zip, a zip without a workbook, a broken workbook
        raise ContractFileError(f"{path.name} 不是可读的 XLSX 工作簿，从第 1 行起无法读取"
                                f"（{type(error).__name__}：{error}）") from None
    try:
        sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header = [_cell_text(v, None).strip() for v in next(rows, ())]
        kinds = [spec.columns.get(name) for name in header]
        yield header
        for values in rows:
            yield [_cell_text(v, kinds[i] if i < len(kinds) else None) for i, v in enumerate(values)]
    finally:
        workbook.close()


def file_rows(path: Path, spec: contract.FileSpec) -> Iterator[list[str]]:
    """The file's rows as text (the header first), read as they are needed."""
    return _xlsx_rows(path, spec) if path.suffix.lower() == ".xlsx" else _csv_rows(path)


def read_header(rows: Iterator[list[str]], path: Path, spec: contract.FileSpec) -> list[str]:
    """The header as delivered (trailing empty cells dropped); ``ContractFileError`` when
    there is none or it repeats a column."""
    first = next(rows, None)
    if first is None:
        raise ContractFileError(f"{path.name} 是空文件，第 1 行没有表头")
    header = [name.strip().lstrip("\ufeff") for name in first]
    while header and header[-1] == "" and spec.columns.get("") is None:
        header.pop()  # trailing empty header cells (a trailing comma, an XLSX's blank columns)
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise ContractFileError(f"{path.name} 的表头（第 1 行）有重复的列：{'、'.join(duplicated)}")
    return header


def data_rows(rows: Iterator[list[str]]) -> Iterator[list[str]]:
    """The data rows: blank lines are skipped."""
    for values in rows:
        # (most rows: a first field that is not blank, told without joining the row)
        if (values and values[0] and not values[0].isspace()) or "".join(values).strip():
            yield values


def _text_frame(records: list[list[str]], extra: list[int], header: list[str]) -> pd.DataFrame:
    import pandas as pd

    # object columns: the texts as read (pandas' str dtype would check each value again)
    frame = pd.DataFrame(records, columns=header, dtype=object) if records else pd.DataFrame(
        {name: pd.Series([], dtype=object) for name in header})
    frame[suites.EXTRA_FIELDS] = pd.Series(extra, dtype="int64") if extra else pd.Series([], dtype="int64")
    return frame


def text_frames(rows: Iterator[list[str]], header: list[str],
                chunk_rows: int | None) -> Iterator[tuple[pd.DataFrame, bool]]:
    """The data rows as frames of text of at most ``chunk_rows`` rows (all of them when
    None): the header's columns (values as delivered, '' when empty) plus
    ``extra_field_count`` per row. Each comes with whether more rows follow; at least one
    (maybe empty) frame."""
    import gc

    width = len(header)
    records: list[list[str]] = []
    extra: list[int] = []
    # While a chunk's rows are read the cyclic garbage collector stays off (as it was, between
    # chunks): the rows are lists by the hundred thousand that make no cycle, and its passes
    # over them took half the reading time. A cycle made meanwhile is collected later.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for values in data_rows(rows):
            if chunk_rows is not None and len(records) == chunk_rows:
                frame = _text_frame(records, extra, header)
                records, extra = [], []
                if collecting:
                    gc.enable()
                yield frame, True
                del frame
                gc.disable()
            if len(values) == width:
                extra.append(0)
                records.append(values)
                continue
            tail = values[width:]
            # trailing empty fields are a trailing separator, not data
            extra.append(sum(1 for v in tail if (v or "").strip()))
            records.append((list(values[:width]) + [""] * (width - len(values)))[:width])
        frame = _text_frame(records, extra, header)
        del records, extra
    finally:
        if collecting:
            gc.enable()
    yield frame, False


def read_contract_file(path: Path, spec: contract.FileSpec) -> tuple[pd.DataFrame, list[str]]:
    """The whole file as one frame of text (see ``text_frames``) and its header as delivered."""
    rows = file_rows(path, spec)
    header = read_header(rows, path, spec)
    [(frame, _)] = list(text_frames(rows, header, None))
    return frame, header


def _stripped(values: list) -> list:
    """The texts stripped, None for '' and for what is not text. str.strip mapped at C speed
    (pandas' .str.strip and mask(== '') cost ~5×), the blanks looked for only when there are."""
    try:
        texts = list(map(str.strip, values))
    except TypeError:  # not all text
        return [(v.strip() or None) if type(v) is str else None for v in values]
    return [text or None for text in texts] if "" in texts else texts


def contract_text(frame: pd.DataFrame, spec: contract.FileSpec, first_row: int = 1) -> pd.DataFrame:
    """Contract columns stripped, '' as missing, numbered ``first_row``.. (the data row number)."""
    import pandas as pd

    out = pd.DataFrame({name: pd.Series(_stripped(frame[name].tolist()), index=frame.index, dtype=str)
                        for name in spec.columns}, index=frame.index)
    out[suites.EXTRA_FIELDS] = frame[suites.EXTRA_FIELDS].to_numpy()
    out[suites.ROW_NUMBER] = range(first_row, first_row + len(out))
    return out


def duplicate_keys(rows: Iterator[list[str]], header: list[str], column: str) -> set[str]:
    """The values of ``column`` (stripped, non-empty) that more than one data row carries.

    Keys are gathered as UTF-8 bytes in numpy arrays (a few bytes a row, not a Python
    string each) and sorted once: memory stays small as files grow.
    """
    import numpy as np

    position = header.index(column)
    parts, batch = [], []
    for values in data_rows(rows):
        key = values[position].strip() if position < len(values) else ""
        if key:
            batch.append(key.encode("utf-8") + b"|")  # the end mark keeps trailing NULs
        if len(batch) == KEY_BATCH_ROWS:
            parts.append(np.array(batch, dtype=bytes))
            batch = []
    if batch:
        parts.append(np.array(batch, dtype=bytes))
    if not parts:
        return set()
    keys = np.sort(np.concatenate(parts))
    del parts
    repeated = keys[1:][keys[1:] == keys[:-1]]
    return {key.decode("utf-8")[:-1] for key in np.unique(repeated).tolist()}


# ---------------------------------------------------------------- typing
class Unfit(str):
    """A value that cannot be stored, as the reason why (e.g. "无法按 date 解析")."""


def _number_limit(table: str, column: str) -> Decimal | int | None:
    """The largest magnitude the warehouse column holds (numeric precision, 4-byte integer)."""
    from sqlalchemy import Integer, Numeric

    from vbp_monitor.model.schema import metadata

    kind = metadata.tables[table].c[column].type
    if isinstance(kind, Numeric) and kind.precision:
        return Decimal(10) ** (kind.precision - (kind.scale or 0))
    if isinstance(kind, Integer):
        return 2 ** 31
    return None


def _typed_column(kind: str, series: pd.Series, limit=None, parsed: pd.Series | None = None,
                  copy_text: bool = False):
    """Python values for the warehouse; ``None`` for missing text, ``Unfit`` for text that
    does not parse or does not fit (a NUL, longer than an XLSX cell, a year outside
    PLAUSIBLE_YEARS, a number beyond the column's precision).

    A time column is read from ``parsed`` when given (``suites.timestamps`` of ``series``,
    the validation's helper column). ``copy_text``: the values that fit in COPY's text format
    instead (``db.copy_text``), each distinct text rendered once; a time column whose texts all
    parsed in range as a numpy datetime64 array (NaT where missing)."""
    import numpy as np
    import pandas as pd

    from vbp_monitor.core import db

    values = series.tolist()
    low, high = PLAUSIBLE_YEARS
    if kind == contract.TEXT:
        try:  # the common case, judged for the whole column at C speed: every text fits
            present = series.dropna().tolist()
            joined = "".join(present)
            fits = "\x00" not in joined and max(map(len, present), default=0) <= MAX_TEXT_CHARS
        except TypeError:  # not all text
            fits = False
        if fits and copy_text and not any(char in joined for char in db.COPY_SPECIAL):
            # texts COPY reads as they are
            if len(present) == len(values):
                return values
            return [db.copy_text(None) if v is None or v != v else v for v in values]
        if fits:
            texts = [None if v is None or v != v else v for v in values]
            return db.copy_column(texts) if copy_text else texts
        texts = [None if v is None or v != v else
                 Unfit("含 NUL 字符（0x00）") if "\x00" in v else
                 Unfit(f"长 {len(v)} 字符，超过 {MAX_TEXT_CHARS}") if len(v) > MAX_TEXT_CHARS else v
                 for v in values]
        return [v if type(v) is Unfit else db.copy_text(v) for v in texts] if copy_text else texts
    if kind == contract.TIMESTAMP:
        if parsed is None:
            parsed = suites.timestamps(series)
        missing = series.isna().to_numpy()
        years = parsed.dt.year.to_numpy()
        if not (~missing & ~((years >= low) & (years <= high))).any():  # every text parsed, in range
            if copy_text:
                return parsed.to_numpy()
            pydatetimes = parsed.dt.to_pydatetime().tolist()
            for i in np.flatnonzero(missing).tolist():
                pydatetimes[i] = None
            return pydatetimes
        pydatetimes = parsed.dt.to_pydatetime().tolist()
        stamps: list = []
        for text, v in zip(values, pydatetimes):
            if text is None or text != text:
                stamps.append(None)
            elif v is pd.NaT or v is None or v != v:
                stamps.append(Unfit(f"无法按 {suites.kind_label(kind)} 解析"))
            elif not low <= v.year <= high:
                stamps.append(Unfit(f"年份 {v.year} 不在 {low}–{high} 之间"))
            else:
                stamps.append(v)
        return stamps

    def parse(text: str):
        if kind == contract.DATE:
            day = dt.datetime.strptime(text, suites.DATE_FORMAT).date()
            if not low <= day.year <= high:
                return Unfit(f"年份 {day.year} 不在 {low}–{high} 之间")
            return day
        value: int | Decimal
        if kind == contract.INT:
            value = int(text)
        elif kind == contract.BOOL:
            return contract.parse_bool(text)
        else:
            value = Decimal(text)
        if limit is not None and abs(value) >= limit:
            return Unfit(f"{text} 超出仓库列的范围（绝对值须小于 {limit}）")
        return value

    cache: dict[str, object] = {}  # dates, prices and flags repeat a lot: each distinct text once
    for v in dict.fromkeys(values):  # (a NaN is its own key: the very object of ``values``)
        if v is None or v != v:
            cache[v] = db.copy_text(None) if copy_text else None
            continue
        try:
            value = parse(v)
        except (ValueError, ArithmeticError):
            value = Unfit(f"无法按 {suites.kind_label(kind)} 解析")
        cache[v] = db.copy_text(value) if copy_text and type(value) is not Unfit else value
    return list(map(cache.__getitem__, values))


def _hours(seconds: float) -> Decimal:
    """response_hours of a response ``seconds`` after the order (``contract.derive``)."""
    return (Decimal(seconds) / Decimal(3600)).quantize(Decimal("0.000001"))


def _derived_columns(table: str, columns: dict[str, list], numbers: list[int],
                     unparsed: dict[int, list[str]]) -> dict[str, list]:
    """``contract.derive`` of every row, column by column for the large table (orders); a row
    whose derived columns cannot be computed joins ``unparsed`` and is left out."""
    if table != "orders":
        names = list(columns)
        rows = []
        for number, values in zip(numbers, zip(*columns.values())):
            try:
                rows.append(contract.derive(table, dict(zip(names, values))))
            except (ValueError, ArithmeticError) as error:  # e.g. a cycle beyond the calendar
                unparsed.setdefault(number, []).append(f"派生列无法计算（{error}）")
        return {name: [row[name] for row in rows] for name in (rows[0] if rows else columns)}
    order_times, responses = columns["order_time"], columns["response_time"]
    hours: list = []
    cache: dict[float, Decimal] = {}  # response delays repeat (whole seconds)
    for order_time, response in zip(order_times, responses):
        if response is None:
            hours.append(None)
            continue
        seconds = (response - order_time).total_seconds()
        value = cache.get(seconds)
        if value is None:
            value = cache[seconds] = _hours(seconds)
        hours.append(value)
    return {**columns, "order_date": [order_time.date() for order_time in order_times], "response_hours": hours}


def _hours_texts(seconds) -> list[str]:
    """``_hours`` of float seconds (a numpy array, no NaN) in COPY's text format. Whole seconds
    (times parse to the second) by integers: micro-hours = seconds × 2500 / 9 to the nearest
    (never a tie: 9 is odd)."""
    import numpy as np

    if not (seconds == np.round(seconds)).all():
        return [str(_hours(s)) for s in seconds.tolist()]
    micro = (seconds.astype(np.int64) * 2500 + 4) // 9
    whole, fraction = np.divmod(np.abs(micro), 10**6)
    return [f"{'-' if negative else ''}{w}.{f:06d}"
            for negative, w, f in zip((micro < 0).tolist(), whole.tolist(), fraction.tolist())]


def _derived_order_texts(order_times, responses, order_time_texts: list[str]) -> dict[str, list[str]]:
    """The orders' derived columns (``_derived_columns``) in COPY's text format, from the
    times as datetime64 arrays and the order times' texts: the same values, array-wise."""
    import numpy as np
    import pandas as pd

    from vbp_monitor.core import db

    # float seconds as timedelta.total_seconds() gives them (microseconds / 10**6), each distinct
    # once; no response (NaN) is code -1: the NULL appended
    codes, seconds = pd.factorize((responses - order_times) / np.timedelta64(1, "s"))
    hours = np.array([*_hours_texts(seconds), db.copy_text(None)])
    # an order time's text starts with its day (YYYY-MM-DD: years are 2000–2099)
    return {"order_date": [text[:10] for text in order_time_texts], "response_hours": hours[codes].tolist()}


def _month_starts(stamps) -> set[dt.date]:
    """The first days of the months of the days of ``stamps`` (datetime64, NaT ignored),
    array-wise: the distinct days counted (no sort, no Python object per row), then each
    distinct day's month."""
    import numpy as np

    days = stamps[~np.isnat(stamps)].astype("datetime64[D]").view(np.int64)
    if not len(days):
        return set()
    first = days.min()
    distinct = (np.flatnonzero(np.bincount(days - first)) + first).astype("datetime64[D]")
    return {day.replace(day=1) for day in distinct.tolist()}


def _time_texts(stamps, texts) -> list[str]:
    """A time column in COPY's text format: its texts (numpy object array, missing as NaN) when
    they are all in the zero-padded shape (what they parsed to, written as PostgreSQL reads
    it), else ``stamps`` (datetime64) rendered."""
    import numpy as np

    from vbp_monitor.core import db

    present = ~np.isnat(stamps)
    if not in_shape(texts[present], suites.TIMESTAMP_FORMAT).all():
        return db.copy_column(stamps)
    if present.all():
        return texts.tolist()
    return np.where(present, texts, db.copy_text(None)).tolist()


def typed_columns(table: str, frame: pd.DataFrame, copy_text: bool = False,
                  months: set[dt.date] | None = None) -> tuple[dict, dict[int, list[str]]]:
    """The good rows typed and derived, column-wise: ``{column: values}`` of the rows that fit
    (no dict per row), and the reasons of the rows that still fail to parse or fit the
    warehouse (a safety net behind the suite's type expectations).

    A time column is read from its validation helper (``<column>__time``) when ``frame`` has
    it. ``copy_text``: the same rows in COPY's text format (``db.CopyColumns``, for
    PostgreSQL's COPY), each distinct text rendered once and times array-wise; not for a
    table whose derived columns come from typed rows other than the orders (batches).
    ``months`` (orders): receives the first days of the months of the rows' order_date."""
    import numpy as np

    from vbp_monitor.core import db
    from vbp_monitor.model.schema import metadata

    spec = contract.FILES[table]
    copy_text = copy_text and (table == "orders" or set(metadata.tables[table].c.keys()) <= set(spec.columns))
    columns = {name: _typed_column(kind, frame[name],
                                   _number_limit(table, name) if kind in suites.NUMERIC_KINDS else None,
                                   frame.get(suites.time_helper(name)), copy_text)
               for name, kind in spec.columns.items()}
    numbers = frame[suites.ROW_NUMBER].tolist()
    unparsed: dict[int, list[str]] = {}
    for name, values in columns.items():
        if not isinstance(values, list) or Unfit not in set(map(type, values)):
            continue
        for i, value in enumerate(values):
            if type(value) is Unfit:
                unparsed.setdefault(numbers[i], []).append(f"{suites.column_label(name)} {value}")
    if unparsed:
        kept = [i for i, number in enumerate(numbers) if number not in unparsed]
        columns = {name: [values[i] for i in kept] if isinstance(values, list) else values[kept]
                   for name, values in columns.items()}
        numbers = [numbers[i] for i in kept]
    if not copy_text:
        derived = _derived_columns(table, columns, numbers, unparsed)
        if months is not None:
            months.update(day.replace(day=1) for day in set(derived["order_date"]))
        return derived, unparsed
    stamps = {}
    for name, kind in spec.columns.items():
        if kind == contract.TIMESTAMP:  # (a list when a text did not fit: datetimes and None left)
            stamps[name] = np.asarray(columns[name], dtype="datetime64[us]")
            texts = frame[name].to_numpy(dtype=object)
            columns[name] = _time_texts(stamps[name], texts[kept] if unparsed else texts)
    if table == "orders":
        columns.update(_derived_order_texts(stamps["order_time"], stamps["response_time"], columns["order_time"]))
        if months is not None:
            months.update(_month_starts(stamps["order_time"]))
    return db.CopyColumns(columns), unparsed


# ---------------------------------------------------------------- writing
def upsert(conn, table_name: str, rows: list[dict] | dict[str, list],
           old_values: dict[str, set] | None = None) -> int:
    """Good rows of a contract table, by primary key (``core.db.upsert``, with its
    ``old_values``)."""
    from vbp_monitor.core import db
    from vbp_monitor.model.schema import metadata

    return db.upsert(conn, metadata.tables[table_name], rows, old_values=old_values)


def replace_quarantine(conn, table: str, source_file: str, rows: list[dict], delete: bool = True) -> None:
    """The quarantine of a table's file is the latest delivery's: drop the earlier rows
    (whatever the extension was) and insert this delivery's (``delete=False``: add rows of
    the same delivery)."""
    from sqlalchemy import delete as delete_
    from sqlalchemy import insert

    from vbp_monitor.model.schema import quarantine

    if delete:
        conn.execute(delete_(quarantine).where(
            quarantine.c.source_file.in_([f"{table}{ext}" for ext in EXTENSIONS] + [source_file])))
    for start in range(0, len(rows), QUARANTINE_CHUNK_ROWS):
        conn.execute(insert(quarantine), rows[start:start + QUARANTINE_CHUNK_ROWS])


def after_load(conn, table: str, changed_months: Collection[dt.date] | None = None) -> None:
    """Refresh what depends on a table that just changed.

    ``changed_months``, of the orders: the months of the loaded lines' order_date and of the
    order_date the updated lines had before (``_load``): only these months' facts are
    cleared (a facts row is of its line's order month). Products, batches and agreements
    change the segments and selection of every month: every month is cleared; so is it for
    orders without ``changed_months``."""
    from vbp_monitor.model.calendar_tables import ensure_cycle_month_calendar, rebuild_work_calendar
    from vbp_monitor.model.schema import clear_facts_cache

    if table == "holidays":
        rebuild_work_calendar(conn)
    if table in FACTS_SOURCES:
        # the facts are a cache of orders × products × batches × agreements
        clear_facts_cache(conn, changed_months if table == MONTHLY_FACTS_SOURCE else None)
    if table == "agreements":
        ensure_cycle_month_calendar(conn)


# ---------------------------------------------------------------- validating a chunk
UNIQUE = "expect_column_values_to_be_unique"
STRFTIME = "expect_column_values_to_match_strftime_format"
NOT_IN_SET = "expect_column_values_to_not_be_in_set"
# the contract's formats in their zero-padded ASCII shape (each 0 an ASCII digit): pandas
# parses these at C speed
CANONICAL_SHAPES = {suites.TIMESTAMP_FORMAT: "0000-00-00 00:00:00", suites.DATE_FORMAT: "0000-00-00"}
# suites with a figure over the whole file beyond chunkable()'s types: the agreements'
# period_conflicts compares every agreement of an institution and batch in the file
WHOLE_FILE_TABLES = frozenset({"agreements"})


def chunk_rows(table: str) -> int | None:
    """Rows per chunk for ``table``'s files, or None when its suite needs the whole file
    (a file-wide figure, or a uniqueness over several columns)."""
    if table in WHOLE_FILE_TABLES or not suites.chunkable(table):
        return None
    expectations = suites.load_suite_json(table)["expectations"]
    if any(item["type"] == "expect_compound_columns_to_be_unique" for item in expectations):
        return None
    return CHUNK_ROWS


def unique_columns(table: str) -> list[str]:
    return [item["kwargs"]["column"] for item in suites.load_suite_json(table)["expectations"]
            if item["type"] == UNIQUE]


def _strptime_fails(text: str, strftime_format: str) -> bool:
    try:
        dt.datetime.strptime(text, strftime_format)
    except ValueError:
        return True
    return False


def in_shape(texts, strftime_format: str):
    """Per text (a numpy object array of str), whether it is in the format's zero-padded ASCII
    shape (``CANONICAL_SHAPES``), checked on its code points at C speed; a time's seconds
    below 60 too (pandas reads 60 and 61, which datetime refuses)."""
    import numpy as np

    shape = CANONICAL_SHAPES[strftime_format]
    width = len(shape)
    fits = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)) == width
    # the texts of the shape's length as rows of code points (UTF-32: one unit per character)
    encoded = "".join(texts[fits].tolist()).encode("utf-32-le", "surrogatepass")
    points = np.frombuffer(encoded, dtype=np.uint32).reshape(-1, width)
    digits = [i for i, char in enumerate(shape) if char == "0"]
    marks = [i for i, char in enumerate(shape) if char != "0"]
    shaped = (((points[:, digits] - ord("0")) < 10).all(axis=1)  # (below "0" wraps around: large)
              & (points[:, marks] == np.array([ord(shape[i]) for i in marks], dtype=np.uint32)).all(axis=1))
    if strftime_format == suites.TIMESTAMP_FORMAT:
        shaped &= points[:, 17] < ord("6")
    fits[fits] = shaped
    return fits


def unparseable(series: pd.Series, strftime_format: str, parsed: pd.Series | None = None) -> list[str]:
    """The distinct values of ``series`` that ``datetime.strptime(value, strftime_format)``
    rejects (GX's test for expect_column_values_to_match_strftime_format), found without
    calling it on every value: what pandas parses in the zero-padded shape is valid; only
    the rest is tried one distinct value at a time. ``parsed``: pandas' parse of ``series``
    in that format, when the caller has it (the validation's helper column)."""
    import numpy as np
    import pandas as pd

    present = series.notna().to_numpy()
    texts = series.to_numpy(dtype=object)[present]
    if strftime_format in CANONICAL_SHAPES and len(texts):
        if parsed is None:
            parsed = pd.to_datetime(series, format=strftime_format, errors="coerce")
        stamps = parsed.to_numpy()[present]
        # pandas also reads year 0000, which datetime (so strptime) refuses
        years = stamps.astype("datetime64[Y]").astype(np.int64) + 1970
        texts = texts[~(in_shape(texts, strftime_format) & ~np.isnat(stamps) & (years >= dt.MINYEAR))]
    return sorted(v for v in set(texts.tolist()) if _strptime_fails(v, strftime_format))


def presolve(table: str, suite_json: dict, frame: pd.DataFrame, duplicates: dict[str, set[str]] | None) -> dict:
    """The resolved suite with two expectations stated as an equivalent one for this chunk
    (as ``resolve_references`` does with references; messages keep the stated type):

    * ``match_strftime_format`` → ``not_in_set`` the chunk's values that do not parse (GX
      calls strptime once per row, most of the time of a large file);
    * ``to_be_unique`` → ``not_in_set`` the chunk's values that the whole file repeats
      (``duplicates``, when the file is read in several chunks: see ``_load``).
    """
    kinds = contract.FILES[table].columns
    for expectation in suite_json["expectations"]:
        kwargs = expectation.get("kwargs", {})
        column = kwargs.get("column")
        if expectation["type"] == STRFTIME and set(kwargs) == {"column", "strftime_format"}:
            helper = suites.time_helper(column)
            same = helper in frame and suites.TIME_FORMATS.get(kinds.get(column)) == kwargs["strftime_format"]
            value_set = unparseable(frame[column], kwargs["strftime_format"], frame[helper] if same else None)
        elif expectation["type"] == UNIQUE and duplicates is not None and set(kwargs) == {"column"}:
            present = frame[column].dropna()
            value_set = sorted(set(present[present.isin(duplicates[column])].tolist()))
        else:
            continue
        expectation["meta"] = {**(expectation.get("meta") or {}), "stated_type": expectation["type"]}
        expectation["type"] = NOT_IN_SET
        expectation["kwargs"] = {"column": column, "value_set": value_set}
    return suite_json


def validate_chunk(conn, table: str, prepared: pd.DataFrame,
                   duplicates: dict[str, set[str]] | None) -> suites.SuiteOutcome:
    """``expectations.validate_frame`` for one chunk of a file whose helper columns are added
    (``expectations.add_helper_columns``: typing reads its times from them; see ``presolve``)."""
    resolved = suites.resolve_references(conn, suites.load_suite_json(table), prepared)
    return suites.run_suite(table, presolve(table, resolved, prepared, duplicates), prepared)


class _KeyInTwoChunks(Exception):
    """Chunks judged on the keys each repeats itself: a key is in two of them (see ``_load``)."""


def _chunk_repeats(keys: pd.Series, seen):
    """The values ``keys`` repeats, and ``seen`` (the earlier chunks' distinct key hashes,
    sorted) with this chunk's added; ``_KeyInTwoChunks`` when a hash was seen (a key of an
    earlier chunk or, far more rarely, another key of the same hash)."""
    import numpy as np

    present = keys.dropna()
    values = present.tolist()
    mine = np.unique(np.fromiter(map(hash, values), dtype=np.int64, count=len(values)))
    merged = np.sort(np.concatenate([seen, mine]), kind="stable")  # (two sorted runs: merged in one pass)
    if (merged[1:] == merged[:-1]).any():
        raise _KeyInTwoChunks
    return set(present[present.duplicated(keep=False)].tolist()), merged


# ---------------------------------------------------------------- one file
def _rejected(engine, run, file_name: str, rows: int, why: str, summary: dict) -> dict:
    message = (
        f"数据质量问题：{file_name} {why}，整份文件被拒收（共 {rows} 行数据，均未入库，"
        f"仓库中该表保持上次的数据）。请数据组按数据契约更正后重新投递 {file_name}；"
        f"当天重新投递且校验通过后本预警自动关闭。依据：{suites.clause()}。"
    )
    with engine.begin() as conn:
        run.store.replace(conn, ["DATA_QUALITY"], [suites.data_quality_alert(conn, file_name, message, rows)],
                          source_file=file_name)
    log.warning("%s rejected: %s", file_name, why)
    summary.update(rejected=rows, reason=why)
    return summary


class _FileFailure(Exception):
    """A chunk failed a file-level expectation: the whole file is rejected."""

    def __init__(self, why: str, read: int):
        super().__init__(why)
        self.why, self.read = why, read


def _quarantine_rows(raw: pd.DataFrame, frame: pd.DataFrame, spec: contract.FileSpec, first_row: int,
                     reasons: dict[int, list[str]], file_name: str, run, now: dt.datetime) -> list[dict]:
    numbers = sorted(reasons)
    positions = [number - first_row for number in numbers]
    bad = raw.iloc[positions].drop(columns=[suites.EXTRA_FIELDS])
    key_text = frame.iloc[positions][list(spec.key)].fillna("")
    # a NUL (which PostgreSQL text cannot hold) is shown as \x00 in the key and the alert
    keys = key_text.astype(str).agg(suites.KEY_SEPARATOR.join, axis=1).str.replace("\x00", "\\x00").tolist()
    return [{
        "source_file": file_name, "row_number": number, "row_key": key,
        "raw_row": json.dumps(row, ensure_ascii=False), "reasons": "；".join(reasons[number]),
        "run_id": run.run_id, "quarantined_at": now,
    } for number, key, row in zip(numbers, keys, bad.to_dict("records"))]


def _load(conn, run, table: str, path: Path, header: list[str], rows: Iterator[list[str]],
          duplicates: dict[str, set[str]] | None) -> dict:
    """Validate, quarantine and upsert the file chunk by chunk in ``conn``'s transaction;
    raises ``_FileFailure`` (the caller rolls back) on a file-level failure.

    ``duplicates``: the values each unique column repeats in the whole file, or None. Then a
    file of several chunks has each chunk judged with the keys it repeats itself (no pass over
    the file first): the same judgement unless a key is in two chunks, which raises
    ``_KeyInTwoChunks`` at the later one (the caller rolls back and loads again with them).

    Of the orders, the summary's ``changed_months`` are the months whose facts the load made
    stale (``after_load``): of the loaded lines' order_date, and of the order_date the lines
    whose key was stored had before (``db.upsert``'s ``old_values``)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    import numpy as np

    from vbp_monitor.core import db

    spec = contract.FILES[table]
    file_name = path.name
    size = chunk_rows(table)
    frames = text_frames(rows, header, size)
    seen: dict | None = None  # per unique column: the distinct key hashes of the chunks so far
    outcomes: list[suites.SuiteOutcome] = []
    unparsed_texts: set[str] = set()
    examples: list[str] = []
    read = loaded = quarantined = 0
    by_month = table == MONTHLY_FACTS_SOURCE
    new_months: set[dt.date] = set()
    # the order_date of stored lines the upsert updated: filled by the COPY thread too (read
    # only after every COPY's future gave its result, when the thread pool is shut down)
    old_values: dict[str, set] | None = {"order_date": set()} if by_month else None
    now = dt.datetime.now(dt.UTC)
    replace_quarantine(conn, table, file_name, [])
    # PostgreSQL's COPY of a chunk's good rows runs in a thread while the next chunk is read
    # and prepared (the server and Python on two cores); the connection waits for it before
    # its next use (helper columns read the warehouse only for the agreements, one chunk)
    with ThreadPoolExecutor(max_workers=1) as copier:
        copying: Future | None = None
        for raw, more in frames:
            if not read and not more and not len(raw) and not spec.optional_file:
                raise _FileFailure("只有表头（第 1 行），没有数据行", 0)  # a snapshot with no row: an export gone wrong
            first_row = read + 1
            read += len(raw)
            # (no connection while a COPY holds it: only the agreements' helper columns read the
            # warehouse, and their file is one chunk, so nothing is in flight then)
            frame = suites.add_helper_columns(conn if copying is None else None, table,
                                              contract_text(raw, spec, first_row))
            judged = duplicates
            if duplicates is None and (more or seen is not None):
                if seen is None:
                    seen = {column: np.array([], dtype=np.int64) for column in unique_columns(table)}
                judged = {}
                for column in seen:
                    judged[column], seen[column] = _chunk_repeats(frame[column], seen[column])
            if copying is not None:
                loaded += copying.result()
                copying = None
            outcome = validate_chunk(conn, table, frame, judged)
            if outcome.file_failures:
                read += sum(len(rest) for rest, _ in frames)
                broken = "；".join(f"{f.label}，实际值 {f.observed}" for f in outcome.file_failures)
                raise _FileFailure(f"未通过期望套件 {outcome.suite_name} 的文件级期望：{broken}", read)
            reasons = {number: list(texts) for number, texts in outcome.row_reasons.items()}
            good = frame[~frame[suites.ROW_NUMBER].isin(list(reasons))] if reasons else frame
            # PostgreSQL's COPY gets the good rows as text rendered array-wise (no Python object per value)
            records, unparsed = typed_columns(table, good, copy_text=conn.dialect.name == "postgresql"
                                              and len(good) >= db.COPY_MIN_ROWS,
                                              months=new_months if by_month else None)
            del good
            for number, texts in unparsed.items():
                reasons.setdefault(number, []).extend(texts)
                unparsed_texts.update(texts)
            bad = _quarantine_rows(raw, frame, spec, first_row, reasons, file_name, run, now) if reasons else []
            del raw, frame
            replace_quarantine(conn, table, file_name, bad, delete=False)
            examples.extend(q["row_key"] or f"第{q['row_number']}行" for q in bad[:MAX_EXAMPLES - len(examples)])
            quarantined += len(bad)
            if isinstance(records, db.CopyColumns):
                copying = copier.submit(upsert, conn, table, records, old_values)
            else:
                loaded += upsert(conn, table, records, old_values)
            del records, bad
            outcome.row_reasons, outcome.row_keys = {}, {}  # written: only the failures' counts are kept
            outcomes.append(outcome)
        if copying is not None:
            loaded += copying.result()
    # (every COPY done: old_values is complete)
    changed_months = (new_months | {day.replace(day=1) for day in old_values["order_date"]}
                      if old_values is not None else None)
    outcome = suites.merge_outcomes(table, outcomes)
    return {"read": read, "loaded": loaded, "quarantined": quarantined, "examples": examples,
            "failed": "；".join(filter(None, [outcome.failure_summary(), *sorted(unparsed_texts)])),
            "suite_name": outcome.suite_name, "changed_months": changed_months}


def _load_and_alert(engine, run, table: str, path: Path, header: list[str], rows: Iterator[list[str]],
                    duplicates: dict[str, set[str]] | None) -> tuple[int, int, int]:
    """``_load`` and the file's DATA_QUALITY alert in one transaction; (read, loaded, quarantined)."""
    file_name = path.name
    with engine.begin() as conn:
        done = _load(conn, run, table, path, header, rows, duplicates)
        loaded, quarantined = done["loaded"], done["quarantined"]
        if loaded:
            after_load(conn, table, changed_months=done["changed_months"])
        candidates = []
        if quarantined:
            message = (
                f"数据质量问题：{file_name} 共 {done['read']} 行，其中 {quarantined} 行未通过期望套件 "
                f"{done['suite_name']} 的校验，已隔离（quarantine 表，未入库，规则不使用这些行）；"
                f"其余 {loaded} 行已入库。未通过的期望：{done['failed']}。示例主键：{'、'.join(done['examples'])}。"
                f"请数据组核对平台导出、更正后重新投递 {file_name}；当天重新投递且校验通过后本预警自动关闭。"
                f"依据：{suites.clause()}。"
            )
            candidates.append(suites.data_quality_alert(conn, file_name, message, quarantined))
        run.store.replace(conn, ["DATA_QUALITY"], candidates, source_file=file_name)
    return done["read"], loaded, quarantined


def ingest_file(engine, run, table: str, path: Path) -> dict:
    """Ingest one contract file; returns its summary (rows read/loaded/quarantined/rejected).

    The file is read ``chunk_rows(table)`` rows at a time, in one transaction: each chunk is
    validated, its bad rows quarantined and its good rows upserted before the next is read.
    """
    started = time.perf_counter()
    spec = contract.FILES[table]
    file_name = path.name
    summary = {"table": table, "read": 0, "loaded": 0, "quarantined": 0, "rejected": 0}
    rows = file_rows(path, spec)
    try:
        header = read_header(rows, path, spec)
    except ContractFileError as error:
        return _rejected(engine, run, file_name, 0, str(error).removeprefix(f"{file_name} "), summary)
    missing = [name for name in spec.columns if name not in header]
    if missing:
        try:
            read = sum(1 for _ in data_rows(rows))
        except ContractFileError as error:
            return _rejected(engine, run, file_name, 0, str(error).removeprefix(f"{file_name} "), summary)
        summary["read"] = read
        return _rejected(engine, run, file_name, read, f"的表头（第 1 行）缺少契约列 {'、'.join(missing)}", summary)

    try:
        try:
            read, loaded, quarantined = _load_and_alert(engine, run, table, path, header, rows, None)
        except _KeyInTwoChunks:
            # (rolled back) again, with the keys the whole file repeats found first: one pass over them
            keys = file_rows(path, spec)
            next(keys)
            duplicates = {column: duplicate_keys(keys, header, column) for column in unique_columns(table)}
            rows = file_rows(path, spec)
            next(rows)
            read, loaded, quarantined = _load_and_alert(engine, run, table, path, header, rows, duplicates)
    except _FileFailure as failure:
        summary["read"] = failure.read
        return _rejected(engine, run, file_name, failure.read, failure.why, summary)
    except ContractFileError as error:  # a row further on does not read (rolled back)
        return _rejected(engine, run, file_name, 0, str(error).removeprefix(f"{file_name} "), summary)

    summary.update(read=read, loaded=loaded, quarantined=quarantined, seconds=round(time.perf_counter() - started, 2))
    log.info("%s: read %d, loaded %d, quarantined %d (%.1fs)", file_name, summary["read"], loaded,
             quarantined, summary["seconds"])
    return summary


# ---------------------------------------------------------------- the landing folder
def migrate(engine, run) -> dict:
    """The DAG's first step: bring the warehouse to the latest schema migration."""
    from vbp_monitor.core.db import upgrade_schema

    upgrade_schema(engine.url.render_as_string(hide_password=False))
    return {"schema": "head"}


def ingest_landing(engine, run, landing_dir: Path | str | None = None) -> dict:
    """Ingest every contract file present in the landing folder, in load order.

    Returns ``{"landing_dir", "files": {file_name: {table, read, loaded, quarantined,
    rejected, …}}, "absent": [tables], "seconds"}`` (JSON-able, for XCom).
    """
    from vbp_monitor.model.calendar_tables import ensure_work_calendar

    started = time.perf_counter()
    landing = Path(landing_dir or config.landing_dir())
    with engine.begin() as conn:
        ensure_work_calendar(conn)
    summary: dict = {"landing_dir": str(landing), "files": {}, "absent": []}
    if not landing.is_dir():
        log.warning("landing folder %s does not exist: nothing to ingest", landing)
    for table in contract.LOAD_ORDER:
        path = find_contract_file(landing, table) if landing.is_dir() else None
        if path is None:
            summary["absent"].append(table)
            continue
        summary["files"][path.name] = ingest_file(engine, run, table, path)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary
