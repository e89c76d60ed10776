"""Load the platform's exports from the landing folder (data-contract.md › Inbound).

For every contract file present, in ``contract.LOAD_ORDER``:

1. read it as text (CSV in UTF-8, UTF-8 with BOM or GB18030; or the first sheet of an XLSX);
2. reject it whole when its header lacks a contract column (one DATA_QUALITY alert);
3. validate it with its GX suite (``vbp_monitor.quality.expectations``); a failed file-level
   expectation rejects it whole too;
4. in one transaction: replace the file's quarantine rows with the rows that broke a
   row-level expectation, upsert the good rows (typed, derived) by primary key, refresh what
   depends on the table (work calendar, cycle-month calendar, monthly facts cache) and write
   the file's DATA_QUALITY alert (or resolve the earlier one of the same day).

Re-ingesting the same files changes nothing. Heavy imports stay inside functions.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
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
FACTS_SOURCES = {"orders", "products", "batches", "agreements"}


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


def _csv_rows(path: Path) -> list[list[str]]:
    import csv
    import io

    csv.field_size_limit(MAX_CSV_FIELD_CHARS)
    try:
        text = decode_csv(path.read_bytes())
    except ContractFileError as error:
        raise ContractFileError(f"{path.name} {error}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return list(reader)
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


def _xlsx_rows(path: Path, spec: contract.FileSpec) -> list[list[str]]:
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
        out = [header]
        for values in rows:
            out.append([_cell_text(v, kinds[i] if i < len(kinds) else None) for i, v in enumerate(values)])
        return out
    finally:
        workbook.close()


def read_contract_file(path: Path, spec: contract.FileSpec) -> tuple[pd.DataFrame, list[str]]:
    """The file as text: a frame of its header's columns (values as delivered, '' when
    empty), plus ``extra_field_count`` per row; blank lines are skipped. Also returns the
    header as delivered."""
    import pandas as pd

    rows = _xlsx_rows(path, spec) if path.suffix.lower() == ".xlsx" else _csv_rows(path)
    if not rows:
        raise ContractFileError(f"{path.name} 是空文件，第 1 行没有表头")
    header = [name.strip().lstrip("\ufeff") for name in rows[0]]
    while header and header[-1] == "" and spec.columns.get("") is None:
        header.pop()  # trailing empty header cells (a trailing comma, an XLSX's blank columns)
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise ContractFileError(f"{path.name} 的表头（第 1 行）有重复的列：{'、'.join(duplicated)}")
    width = len(header)
    records, extra = [], []
    for values in rows[1:]:
        if not any((v or "").strip() for v in values):
            continue
        tail = values[width:]
        # trailing empty fields are a trailing separator, not data
        extra.append(sum(1 for v in tail if (v or "").strip()))
        records.append((list(values[:width]) + [""] * (width - len(values)))[:width])
    frame = pd.DataFrame(records, columns=header, dtype=str) if records else pd.DataFrame(
        {name: pd.Series([], dtype=str) for name in header})
    frame[suites.EXTRA_FIELDS] = pd.Series(extra, dtype="int64") if extra else pd.Series([], dtype="int64")
    return frame, header


def contract_text(frame: pd.DataFrame, spec: contract.FileSpec) -> pd.DataFrame:
    """Contract columns stripped, '' as missing, numbered 1.. (the data row number)."""
    out = frame[list(spec.columns)].apply(lambda column: column.str.strip())
    out = out.mask(out == "")
    out[suites.EXTRA_FIELDS] = frame[suites.EXTRA_FIELDS].to_numpy()
    out[suites.ROW_NUMBER] = range(1, len(out) + 1)
    return out


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


def _typed_column(kind: str, series: pd.Series, limit=None) -> list:
    """Python values for the warehouse; ``None`` for missing text, ``Unfit`` for text that
    does not parse or does not fit (a NUL, longer than an XLSX cell, a year outside
    PLAUSIBLE_YEARS, a number beyond the column's precision)."""
    import pandas as pd

    values = series.tolist()
    low, high = PLAUSIBLE_YEARS
    if kind == contract.TEXT:
        return [None if v is None or v != v else
                Unfit("含 NUL 字符（0x00）") if "\x00" in v else
                Unfit(f"长 {len(v)} 字符，超过 {MAX_TEXT_CHARS}") if len(v) > MAX_TEXT_CHARS else v
                for v in values]
    if kind == contract.TIMESTAMP:
        parsed = pd.to_datetime(series, format=suites.TIMESTAMP_FORMAT, errors="coerce")
        stamps: list = []
        for text, v in zip(values, parsed.dt.to_pydatetime().tolist()):
            if text is None or text != text:
                stamps.append(None)
            elif v is pd.NaT or v is None or v != v:
                stamps.append(Unfit(f"无法按 {kind} 解析"))
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

    cache: dict[str, object] = {}  # dates, prices and flags repeat a lot
    out: list = []
    for v in values:
        if v is None or v != v:
            out.append(None)
            continue
        if v not in cache:
            try:
                cache[v] = parse(v)
            except (ValueError, ArithmeticError):
                cache[v] = Unfit(f"无法按 {kind} 解析")
        out.append(cache[v])
    return out


def typed_records(table: str, frame: pd.DataFrame) -> tuple[list[dict], dict[int, list[str]]]:
    """Typed and derived rows of the good rows, and reasons for rows that still fail to
    parse or fit the warehouse (a safety net behind the suite's type expectations)."""
    spec = contract.FILES[table]
    columns = {name: _typed_column(kind, frame[name], _number_limit(table, name) if kind in suites.NUMERIC_KINDS
                                   else None)
               for name, kind in spec.columns.items()}
    numbers = frame[suites.ROW_NUMBER].tolist()
    unparsed: dict[int, list[str]] = {}
    for name, values in columns.items():
        for i, value in enumerate(values):
            if isinstance(value, Unfit):
                unparsed.setdefault(numbers[i], []).append(f"{name} {value}")
    records = []
    names = list(columns)
    for i, row_values in enumerate(zip(*columns.values())):
        if numbers[i] in unparsed:
            continue
        try:
            records.append(contract.derive(table, dict(zip(names, row_values))))
        except (ValueError, ArithmeticError) as error:  # e.g. a cycle beyond the calendar
            unparsed.setdefault(numbers[i], []).append(f"派生列无法计算（{error}）")
    return records, unparsed


# ---------------------------------------------------------------- writing
def upsert(conn, table_name: str, rows: list[dict]) -> int:
    """Good rows of a contract table, by primary key (``core.db.upsert``)."""
    from vbp_monitor.core import db
    from vbp_monitor.model.schema import metadata

    return db.upsert(conn, metadata.tables[table_name], rows)


def replace_quarantine(conn, table: str, source_file: str, rows: list[dict]) -> None:
    """The quarantine of a table's file is the latest delivery's: drop the earlier rows
    (whatever the extension was) and insert this delivery's."""
    from sqlalchemy import delete, insert

    from vbp_monitor.model.schema import quarantine

    conn.execute(delete(quarantine).where(quarantine.c.source_file.in_([f"{table}{ext}" for ext in EXTENSIONS]
                                                                        + [source_file])))
    for start in range(0, len(rows), QUARANTINE_CHUNK_ROWS):
        conn.execute(insert(quarantine), rows[start:start + QUARANTINE_CHUNK_ROWS])


def after_load(conn, table: str) -> None:
    """Refresh what depends on a table that just changed."""
    from sqlalchemy import delete

    from vbp_monitor.model.calendar_tables import ensure_cycle_month_calendar, rebuild_work_calendar
    from vbp_monitor.model.schema import purchase_facts, purchase_facts_months

    if table == "holidays":
        rebuild_work_calendar(conn)
    if table in FACTS_SOURCES:
        # the monthly facts are a cache of orders × products × batches × agreements
        conn.execute(delete(purchase_facts))
        conn.execute(delete(purchase_facts_months))
    if table == "agreements":
        ensure_cycle_month_calendar(conn)


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


def ingest_file(engine, run, table: str, path: Path) -> dict:
    """Ingest one contract file; returns its summary (rows read/loaded/quarantined/rejected)."""
    started = time.perf_counter()
    spec = contract.FILES[table]
    file_name = path.name
    summary = {"table": table, "read": 0, "loaded": 0, "quarantined": 0, "rejected": 0}
    try:
        raw, header = read_contract_file(path, spec)
    except ContractFileError as error:
        return _rejected(engine, run, file_name, 0, str(error).removeprefix(f"{file_name} "), summary)
    summary["read"] = len(raw)
    missing = [name for name in spec.columns if name not in header]
    if missing:
        return _rejected(engine, run, file_name, len(raw), f"的表头（第 1 行）缺少契约列 {'、'.join(missing)}",
                         summary)
    if not len(raw) and not spec.optional_file:  # a snapshot with no row: an export that went wrong
        return _rejected(engine, run, file_name, 0, "只有表头（第 1 行），没有数据行", summary)

    frame = contract_text(raw, spec)
    with engine.connect() as conn:
        outcome = suites.validate_frame(conn, table, frame)
    if outcome.file_failures:
        broken = "；".join(f"{f.label}，实际值 {f.observed}" for f in outcome.file_failures)
        return _rejected(engine, run, file_name, len(raw),
                         f"未通过期望套件 {outcome.suite_name} 的文件级期望：{broken}", summary)

    reasons = {number: list(texts) for number, texts in outcome.row_reasons.items()}
    good = frame[~frame[suites.ROW_NUMBER].isin(list(reasons))]
    records, unparsed = typed_records(table, good)
    for number, texts in unparsed.items():
        reasons.setdefault(number, []).extend(texts)

    now = dt.datetime.now(dt.UTC)
    quarantined = []
    if reasons:
        bad = raw.iloc[[number - 1 for number in sorted(reasons)]]
        key_text = frame.iloc[[number - 1 for number in sorted(reasons)]][list(spec.key)].fillna("")
        # a NUL (which PostgreSQL text cannot hold) is shown as \x00 in the key and the alert
        keys = key_text.astype(str).agg(suites.KEY_SEPARATOR.join, axis=1).str.replace("\x00", "\\x00").tolist()
        for number, key, row in zip(sorted(reasons), keys, bad.drop(columns=[suites.EXTRA_FIELDS]).to_dict("records")):
            quarantined.append({
                "source_file": file_name, "row_number": number, "row_key": key,
                "raw_row": json.dumps(row, ensure_ascii=False), "reasons": "；".join(reasons[number]),
                "run_id": run.run_id, "quarantined_at": now,
            })

    candidates = []
    with engine.begin() as conn:
        replace_quarantine(conn, table, file_name, quarantined)
        loaded = upsert(conn, table, records)
        if loaded:
            after_load(conn, table)
        if quarantined:
            examples = "、".join(q["row_key"] or f"第{q['row_number']}行" for q in quarantined[:5])
            failed = "；".join(filter(None, [outcome.failure_summary(),
                                            *sorted({t for texts in unparsed.values() for t in texts})]))
            message = (
                f"数据质量问题：{file_name} 共 {len(raw)} 行，其中 {len(quarantined)} 行未通过期望套件 "
                f"{outcome.suite_name} 的校验，已隔离（quarantine 表，未入库，规则不使用这些行）；"
                f"其余 {loaded} 行已入库。未通过的期望：{failed}。示例主键：{examples}。"
                f"请数据组核对平台导出、更正后重新投递 {file_name}；当天重新投递且校验通过后本预警自动关闭。"
                f"依据：{suites.clause()}。"
            )
            candidates.append(suites.data_quality_alert(conn, file_name, message, len(quarantined)))
        run.store.replace(conn, ["DATA_QUALITY"], candidates, source_file=file_name)

    summary.update(loaded=loaded, quarantined=len(quarantined), seconds=round(time.perf_counter() - started, 2))
    log.info("%s: read %d, loaded %d, quarantined %d (%.1fs)", file_name, summary["read"], loaded,
             len(quarantined), summary["seconds"])
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
