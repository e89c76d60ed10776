"""Broken and hostile platform files (issue 10 › a fault suite with figures).

Each case lands one broken or hostile file next to good files of the small test city (its
warehouse already holds the city, as after an earlier delivery) and runs ``ingest_landing``.
Every case must end as the table says:

* ``rejected``: one DATA_QUALITY alert whose message names the file, the row and the column
  (the header is row 1 for a broken header), and the table exactly as before;
* ``quarantined``: exactly the bad rows in quarantine (row numbers), one DATA_QUALITY alert
  naming the file and the broken column, the good rows loaded;
* ``loaded``: a variant the contract allows (BOM, GB18030, CRLF, …) or a hostile but valid
  value (SQL, HTML, CR/LF, a formula in a name): loaded verbatim, no alert;

and, in every case, ``distributors.csv`` (last in load order) loaded after it: one bad file
never stops the files after it. Injection strings are then mailed: escaped in the HTML,
never in a header, text (not formulas) in the attached spreadsheet.

The summary table: ``lost`` = a DATA_QUALITY alert the case needed and did not get (or a
file not loaded that should have been), ``duplicates`` = more than one alert for the file,
``mislabelled`` = an alert under another period than the run's, ``mismatched`` = rows that
are not where the case says (a bad row loaded, a good row missing, a rejected table changed).
The bulk runs on SQLite; the cases marked ``pg`` run on PostgreSQL too.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from builders import csv_bytes, full_city, header_of, seed, write_csv
from builders import order_line as order
from vbp_monitor.core.periods import ingest_period
from vbp_monitor.model import contract
from vbp_monitor.model.schema import alerts, metadata, quarantine
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.quality.ingest import ingest_landing

D = "2025-03-03"
WITNESS = {"distributor_code": "D-WITNESS", "distributor_name": "见证配送", "emails": "w@example.org"}

# hostile but valid values: stored verbatim, never executed anywhere
SQL = "O'Brien'); DROP TABLE alerts; --"
HTML = "<script>alert('x')</script><b>粗体</b>&amp;"
CRLF = "第九医院\r\nBcc: evil@example.org"
HYPERLINK = '=HYPERLINK("http://evil.example/","点此查看")'
CMD = "+cmd|' /C calc'!A0"
AT = "@SUM(1+1)*cmd|' /C calc'!A0"
MINUS = "-2+3+cmd|' /C calc'!A0"
INJECTIONS = {"H-SQL": SQL, "H-HTML": HTML, "H-CRLF": CRLF, "H-HYPER": HYPERLINK, "H-CMD": CMD,
              "H-AT": AT, "H-MINUS": MINUS}
BRANCH_CRLF = "南康分局\r\nBcc: evil@example.org"


def run_for(run_id: str = "manual__hostile") -> RunContext:
    return RunContext.for_test("vbp_ingest", ingest_period(D), run_id=run_id)


def institution(code: str, name: str, branch: str = "B1") -> dict:
    return {"institution_code": code, "institution_name": name, "branch_code": branch, "ownership": "public",
            "grade": ""}


GOOD_ORDERS = [order("O-G1"), order("O-G2", quantity="4", amount="2")]


def orders_text(rows: list[dict], header: list[str] | None = None, newline: str = "\n") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline)
    header = header or header_of("orders")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(name, "") for name in header])
    return buffer.getvalue()


def institutions_bytes(rows: list[dict], encoding: str = "utf-8") -> bytes:
    return csv_bytes(header_of("institutions"), full_city()["institutions"] + rows, encoding)


def xlsx(path: Path, sheets: list[tuple[str, list[list]]], merge: list[str] = (), formulas: dict | None = None):
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets:
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    first = workbook.worksheets[0]
    for cell, value in (formulas or {}).items():
        first[cell] = value
    for cells in merge:
        first.merge_cells(cells)
    workbook.save(path)


def order_cells(rows: list[dict]) -> list[list]:
    return [header_of("orders"), *[[row.get(name) or None for name in header_of("orders")] for row in rows]]


@dataclass
class Case:
    id: str
    table: str
    write: Callable[[Path], None]  # writes the file(s) into the landing folder
    expected: str  # rejected / quarantined / loaded
    file: str = ""  # the file name the alert names (default: table.csv)
    bad_rows: list[int] = field(default_factory=list)  # data row numbers quarantined
    good: list[str] = field(default_factory=list)  # keys loaded by this file
    absent: list[str] = field(default_factory=list)  # keys that must not be in the table
    column: str = ""  # the column the message must name
    row: str = ""  # the row the message must name (rejections)
    verbatim: dict[str, dict] = field(default_factory=dict)  # key -> {column: value as stored}
    pg: bool = False  # also on PostgreSQL


def put(name: str, data: bytes | str) -> Callable[[Path], None]:
    def write(landing: Path) -> None:
        (landing / name).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return write


def put_orders(rows: list[dict], **kwargs) -> Callable[[Path], None]:
    return put("orders.csv", orders_text(rows, **kwargs))


def latin1_row_in_utf8() -> bytes:
    text = institutions_bytes([institution("H-OK", "瑞金医院")])
    return text + b"H-LAT,Caf" + b"\xe9 H\xf4pital,B1,public,\n"


def gb_row_in_utf8() -> bytes:
    return institutions_bytes([institution("H-OK", "瑞金医院")]) + b"H-GB," + "赣州医院".encode("gb18030") \
        + b",B1,public,\n"


def big_field() -> bytes:
    return institutions_bytes([institution("H-BIG", "大" * (10 * 1024 * 1024 // 3)), institution("H-OK", "瑞金医院")])


def several_sheets(landing: Path) -> None:
    xlsx(landing / "orders.xlsx", [("orders", order_cells(GOOD_ORDERS)), ("说明", [["导出说明"], ["第二页不读"]]),
                                   ("orders_old", order_cells([order("O-OLD")]))])


def cover_sheet_first(landing: Path) -> None:
    xlsx(landing / "orders.xlsx", [("封面", [["赣州市集采订单导出"], ["2025年3月"]]),
                                   ("orders", order_cells(GOOD_ORDERS))])


def merged_cells(landing: Path) -> None:
    # institution_code of rows 2 and 3 merged, as a person tidying the sheet would: row 3 loses it
    xlsx(landing / "orders.xlsx", [("orders", order_cells([order("O-M1"), order("O-M2"), order("O-M3")]))],
         merge=["B3:B4"])


def formulas(landing: Path) -> None:
    # amount as a formula without a cached value (saved by a program, not Excel): no amount
    xlsx(landing / "orders.xlsx", [("orders", order_cells([order("O-F1"), order("O-F2")]))],
         formulas={"I3": "=G3*H3"})


def both_formats(landing: Path) -> None:
    import os

    xlsx(landing / "orders.xlsx", [("orders", order_cells([order("O-OLDER")]))])
    os.utime(landing / "orders.xlsx", (1_700_000_000, 1_700_000_000))
    (landing / "orders.csv").write_text(orders_text(GOOD_ORDERS), encoding="utf-8")


CASES = [
    # ---------------------------------------------------------------- encodings and BOMs
    Case("GB18030 file", "institutions", put("institutions.csv", institutions_bytes(
        [institution("H-GB", "赣州市第五人民医院")], "gb18030")), "loaded", good=["H-GB"],
        verbatim={"H-GB": {"institution_name": "赣州市第五人民医院"}}, pg=True),
    Case("UTF-8 with BOM", "institutions", put("institutions.csv", institutions_bytes(
        [institution("H-BOM", "瑞金医院")], "utf-8-sig")), "loaded", good=["H-BOM"],
        verbatim={"H-BOM": {"institution_name": "瑞金医院"}}),
    Case("UTF-16 with BOM", "institutions", put("institutions.csv", institutions_bytes(
        [institution("H-U16", "瑞金医院")], "utf-16")), "rejected", absent=["H-U16"], row="第 1 行", pg=True),
    Case("UTF-8 file, one Latin-1 row", "institutions", put("institutions.csv", latin1_row_in_utf8()), "rejected",
         absent=["H-OK", "H-LAT"], column="institution_name", row="第 7 行"),
    Case("UTF-8 file, one GB18030 row", "institutions", put("institutions.csv", gb_row_in_utf8()), "rejected",
         absent=["H-OK", "H-GB"], column="institution_name", row="第 7 行"),
    Case("Latin-1 garbage file", "institutions", put("institutions.csv",
         b"institution_code,institution_name,branch_code,ownership,grade\nH-L1,Zo\xeb,B1,public,\n"), "rejected",
         absent=["H-L1"], column="institution_name", row="第 2 行"),
    Case("binary garbage", "orders", put("orders.csv", bytes(range(256)) * 4), "rejected", row="第 2 行"),
    # ---------------------------------------------------------------- line endings, blank lines
    Case("CRLF line endings", "orders", put_orders(GOOD_ORDERS, newline="\r\n"), "loaded", good=["O-G1", "O-G2"]),
    Case("CR line endings", "orders", put_orders(GOOD_ORDERS, newline="\r"), "loaded", good=["O-G1", "O-G2"]),
    Case("blank and whitespace lines", "orders", put("orders.csv", orders_text(GOOD_ORDERS).replace(
        "\nO-G2", "\n\n  ,  ,\nO-G2")), "loaded", good=["O-G1", "O-G2"]),
    # ---------------------------------------------------------------- empty, header only, header faults
    Case("empty file", "orders", put("orders.csv", b""), "rejected", row="第 1 行", pg=True),
    Case("header only", "orders", put_orders([]), "rejected", row="第 1 行"),
    Case("missing column", "orders", put_orders(GOOD_ORDERS, header=[c for c in header_of("orders") if c != "amount"]),
         "rejected", absent=["O-G1"], column="amount", row="第 1 行"),
    Case("extra column", "orders", put_orders([dict(o, remark="备注") for o in GOOD_ORDERS],
                                               header=[*header_of("orders"), "remark"]), "loaded",
         good=["O-G1", "O-G2"]),
    Case("duplicated column", "orders", put_orders(GOOD_ORDERS, header=[*header_of("orders"), "quantity"]),
         "rejected", absent=["O-G1"], column="quantity", row="第 1 行"),
    Case("semicolon separated", "orders", put("orders.csv", orders_text(GOOD_ORDERS).replace(",", ";")),
         "rejected", absent=["O-G1"], column="order_id", row="第 1 行"),
    # ---------------------------------------------------------------- rows
    Case("row with extra fields", "orders", put("orders.csv", orders_text(GOOD_ORDERS) + orders_text(
        [order("O-X")]).splitlines()[1] + ",surplus\n"), "quarantined", bad_rows=[3], good=["O-G1", "O-G2"],
         absent=["O-X"], column="行尾多余字段数"),
    Case("short row", "orders", put("orders.csv", orders_text(GOOD_ORDERS) + "O-S,H1,P-AML-S\n"), "quarantined",
         bad_rows=[3], good=["O-G1", "O-G2"], absent=["O-S"], column="channel"),
    Case("wrong types", "orders", put_orders([*GOOD_ORDERS, order("O-T1", quantity="十"), order(
        "O-T2", unit_price="0,5"), order("O-T3", cancelled="maybe")]), "quarantined", bad_rows=[3, 4, 5],
         good=["O-G1", "O-G2"], absent=["O-T1", "O-T2", "O-T3"], column="quantity", pg=True),
    Case("duplicate key", "orders", put_orders([*GOOD_ORDERS, order("O-D"), order("O-D", quantity="2",
                                                                                 amount="1")]),
         "quarantined", bad_rows=[3, 4], good=["O-G1", "O-G2"], absent=["O-D"], column="order_id"),
    Case("impossible date 2025-02-30", "orders", put_orders([*GOOD_ORDERS, order(
        "O-FEB30", acceptance_date="2025-02-30")]), "quarantined", bad_rows=[3], good=["O-G1", "O-G2"],
         absent=["O-FEB30"], column="acceptance_date", pg=True),
    Case("year 0000", "orders", put_orders([*GOOD_ORDERS, order("O-Y0", order_time="0000-01-01 09:00:00")]),
         "quarantined", bad_rows=[3], good=["O-G1", "O-G2"], absent=["O-Y0"], column="order_time"),
    Case("year 9999", "orders", put_orders([*GOOD_ORDERS, order("O-Y9", order_time="9999-12-31 09:00:00")]),
         "quarantined", bad_rows=[3], good=["O-G1", "O-G2"], absent=["O-Y9"], column="order_time", pg=True),
    Case("year 1900 and 2999", "payments", put("payments.csv", csv_bytes(header_of("payments"), [
        {"payment_id": "PAY-G", "order_id": "O-1", "payment_date": "2025-03-01", "amount": "1"},
        {"payment_id": "PAY-1900", "order_id": "O-1", "payment_date": "1900-01-01", "amount": "1"},
        {"payment_id": "PAY-2999", "order_id": "O-1", "payment_date": "2999-03-01", "amount": "1"}])),
         "quarantined", bad_rows=[2, 3], good=["PAY-G"], absent=["PAY-1900", "PAY-2999"], column="payment_date"),
    Case("time-zone offsets", "orders", put_orders([*GOOD_ORDERS, order(
        "O-TZ1", order_time="2025-02-20 09:00:00+08:00"), order("O-TZ2", order_time="2025-02-20T01:00:00Z")]),
         "quarantined", bad_rows=[3, 4], good=["O-G1", "O-G2"], absent=["O-TZ1", "O-TZ2"], column="order_time"),
    Case("number too large for its column", "orders", put_orders([*GOOD_ORDERS, order(
        "O-BIG", quantity="123456789012345678901234567890", unit_price="0", amount="0")]), "quarantined",
         bad_rows=[3], good=["O-G1", "O-G2"], absent=["O-BIG"], column="quantity", pg=True),
    Case("int too large for its column", "batches", put("batches.csv", csv_bytes(header_of("batches"), [
        {**full_city()["batches"][0]},
        {"batch_code": "NB-BIG", "batch_name": "大", "level": "national", "category": "drug",
         "start_date": "2025-01-01", "cycle_months": "99999999999"}])), "quarantined", bad_rows=[2],
         good=["NB1"], absent=["NB-BIG"], column="cycle_months"),
    Case("10 MB field", "institutions", put("institutions.csv", big_field()), "quarantined", bad_rows=[5],
         good=["H1", "H-OK"], absent=["H-BIG"], column="institution_name"),
    Case("NUL byte", "orders", put_orders([*GOOD_ORDERS, order("O-\x00NUL"), order("O-N2", distributor_code="D\x001")]),
         "quarantined", bad_rows=[3, 4], good=["O-G1", "O-G2"], absent=["O-N2"], column="order_id", pg=True),
    Case("unterminated quote", "orders", put("orders.csv", orders_text(GOOD_ORDERS) + 'O-Q,"H1,P-AML-S\n'),
         "quarantined", bad_rows=[3], good=["O-G1", "O-G2"], absent=["O-Q"], column="institution_code"),
    # ---------------------------------------------------------------- XLSX
    Case("XLSX with several sheets", "orders", several_sheets, "loaded", file="orders.xlsx", good=["O-G1", "O-G2"],
         absent=["O-OLD"]),
    Case("XLSX, cover sheet first", "orders", cover_sheet_first, "rejected", file="orders.xlsx",
         absent=["O-G1"], column="order_id", row="第 1 行"),
    Case("XLSX merged cells", "orders", merged_cells, "quarantined", file="orders.xlsx", bad_rows=[3],
         good=["O-M1", "O-M2"], absent=["O-M3"], column="institution_code"),
    Case("XLSX formula without value", "orders", formulas, "quarantined", file="orders.xlsx", bad_rows=[2],
         good=["O-F1"], absent=["O-F2"], column="amount"),
    Case("XLSX that is not a zip", "orders", put("orders.xlsx", orders_text(GOOD_ORDERS)), "rejected",
         file="orders.xlsx", absent=["O-G1"], row="第 1 行", pg=True),
    # ---------------------------------------------------------------- names
    Case("ORDERS.CSV upper case", "orders", put("ORDERS.CSV", orders_text(GOOD_ORDERS)), "loaded",
         file="ORDERS.CSV", good=["O-G1", "O-G2"]),
    Case("orders.csv and orders.xlsx", "orders", both_formats, "loaded", good=["O-G1", "O-G2"], absent=["O-OLDER"]),
    # ---------------------------------------------------------------- injection in names (valid values)
    Case("SQL, HTML, CRLF, formulas in names", "institutions", put("institutions.csv", institutions_bytes(
        [institution(code, name) for code, name in INJECTIONS.items()])), "loaded", good=list(INJECTIONS),
         verbatim={code: {"institution_name": name} for code, name in INJECTIONS.items()}, pg=True),
    Case("CRLF in a branch name", "branches", put("branches.csv", csv_bytes(header_of("branches"), [
        {**row, "branch_name": BRANCH_CRLF} if row["branch_code"] == "B2" else row
        for row in full_city()["branches"]])), "loaded", good=["B2"],
         verbatim={"B2": {"branch_name": BRANCH_CRLF}}),
]


# ---------------------------------------------------------------- running a case
def table_rows(engine, name: str) -> dict[str, dict]:
    table = metadata.tables[name]
    key = contract.FILES[name].key[0]
    with engine.connect() as conn:
        return {str(row[key]): dict(row) for row in conn.execute(select(table)).mappings()}


def land(tmp_path: Path, case: Case) -> Path:
    landing = tmp_path / "landing"
    landing.mkdir()
    case.write(landing)
    write_csv(landing, "distributors", [*full_city()["distributors"], WITNESS])
    return landing


def seeded(engine) -> None:
    with engine.begin() as conn:
        seed(conn, full_city())


def outcome(engine, case: Case, before: dict[str, dict], summary: dict) -> dict:
    """What the case ended as, and its figures; asserts nothing."""
    file_name = case.file or f"{case.table}.csv"
    with engine.connect() as conn:
        dq = [dict(r) for r in conn.execute(select(alerts).where(
            alerts.c.rule_code == "DATA_QUALITY", alerts.c.status == "open")).mappings()]
        held = [dict(r) for r in conn.execute(select(quarantine).where(
            quarantine.c.source_file == file_name).order_by(quarantine.c.row_number)).mappings()]
    mine = [a for a in dq if a["source_file"] == file_name]
    after = table_rows(engine, case.table)
    result = summary["files"].get(file_name, {})
    ended = ("rejected" if result.get("reason") is not None or (mine and not held)
             else "quarantined" if held else "loaded" if file_name in summary["files"] else "ignored")
    mismatched = sum(1 for key in case.good if key not in after)
    mismatched += sum(1 for key in case.absent if key in after)
    if case.expected == "rejected":
        mismatched += sum(1 for key in set(before) | set(after) if before.get(key) != after.get(key))
    mismatched += len({r["row_number"] for r in held} ^ set(case.bad_rows))
    for key, values in case.verbatim.items():
        mismatched += sum(1 for column, value in values.items() if (after.get(key) or {}).get(column) != value)
    witness_loaded = "D-WITNESS" in table_rows(engine, "distributors")
    needs_alert = case.expected in ("rejected", "quarantined")
    return {
        "ended": ended if not held else f"quarantined {len(held)}, loaded {result.get('loaded')}",
        "state": ended, "alerts": mine, "held": held, "other_alerts": [a for a in dq if a not in mine],
        "lost": int(needs_alert and not mine) + int(not witness_loaded),
        "duplicates": max(0, len(mine) - 1) + int(not needs_alert and bool(mine)),
        "mislabelled": sum(1 for a in dq if a["period"] != D),
        "mismatched": mismatched,
    }


def check(engine, case: Case, tmp_path: Path, fault_table: list[dict]) -> dict:
    seeded(engine)
    before = table_rows(engine, case.table)
    summary = ingest_landing(engine, run_for(), land(tmp_path, case))
    got = outcome(engine, case, before, summary)
    fault_table.append({"case": case.id, "db": engine.dialect.name, "faults": 1, "expected": case.expected,
                        "ended": got["ended"], **{k: got[k] for k in ("lost", "duplicates", "mislabelled",
                                                                       "mismatched")}})
    file_name = case.file or f"{case.table}.csv"
    assert got["state"] == case.expected, (got["ended"], [a["message"] for a in got["alerts"]])
    assert (got["lost"], got["duplicates"], got["mislabelled"], got["mismatched"]) == (0, 0, 0, 0), got
    assert got["other_alerts"] == [], [a["message"] for a in got["other_alerts"]]
    if got["alerts"]:
        (message,) = [a["message"] for a in got["alerts"]]
        assert file_name in message
        if case.row:
            assert case.row in message, message
        if case.column:
            reasons = " ".join(r["reasons"] for r in got["held"])
            assert case.column in message or case.column in reasons, (message, reasons)
    return got


def _params(cases: list[Case]):
    return [pytest.param(case, id=case.id) for case in cases]


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", _params(CASES))
def test_a_hostile_file_ends_as_the_table_says_on_sqlite(engine, case, tmp_path, fault_table):
    check(engine, case, tmp_path, fault_table)


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("case", _params([case for case in CASES if case.pg]))
def test_a_hostile_file_ends_as_the_table_says_on_postgresql(engine, case, tmp_path, fault_table):
    check(engine, case, tmp_path, fault_table)


def test_the_suite_has_at_least_30_files_and_every_outcome():
    assert len(CASES) >= 30
    assert {case.expected for case in CASES} == {"rejected", "quarantined", "loaded"}
    assert len({case.id for case in CASES}) == len(CASES)


# ---------------------------------------------------------------- injection strings, mailed
def test_injection_strings_are_inert_in_mail_and_text_in_spreadsheets(engine, tmp_path, smtp_server, fault_table):
    from openpyxl import load_workbook

    from fixtures_smtp import alert, audit_mail, raise_alerts
    from vbp_monitor.core.periods import judged_month
    from vbp_monitor.notify.mailer import notify_run

    seeded(engine)
    landing = tmp_path / "landing"
    landing.mkdir()
    put("branches.csv", csv_bytes(header_of("branches"), [
        {**row, "branch_name": BRANCH_CRLF} if row["branch_code"] == "B2" else row
        for row in full_city()["branches"]]))(landing)
    put("institutions.csv", institutions_bytes(
        [institution(code, name, branch="B1" if i % 2 else "B2") for i, (code, name) in
         enumerate(INJECTIONS.items())]))(landing)
    ingest_landing(engine, run_for(), landing)
    stored = table_rows(engine, "institutions")
    assert {code: stored[code]["institution_name"] for code in INJECTIONS} == INJECTIONS  # verbatim

    run = RunContext.for_test("vbp_monthly_monitoring", judged_month(dt.date(2025, 3, 3)), run_id="scheduled__x")
    raise_alerts(engine, run, [alert("PAYMENT_OVERDUE", code, "B1" if i % 2 else "B2", "critical",
                                     order_id=f"O-{code}", message=f"{name} 货款逾期")
                               for i, (code, name) in enumerate(INJECTIONS.items())])
    notify_run(engine, run)
    assert smtp_server.messages
    problems = 0
    for mail in smtp_server.messages:
        # a CR/LF in a name never starts a header of its own (the subject carries the branch's name
        # on one line), no header value carries markup or SQL, nobody else is added as a recipient
        raw_lines = mail.message.as_bytes().split(b"\n")
        problems += sum(1 for line in raw_lines if line.lower().startswith(b"bcc:"))
        problems += sum(1 for k, v in mail.message.items() if k.lower() == "bcc" or "\r" in str(v)
                        or "\n" in str(v).replace("\n ", "") or "<script" in str(v) or "DROP TABLE" in str(v))
        html = mail.html()
        assert "evil@example.org" not in mail.rcpt_tos
        assert "<script" not in html and "<b>粗体</b>" not in html
        for xlsx_bytes in mail.attachments().values():
            for sheet in load_workbook(io.BytesIO(xlsx_bytes)).worksheets:
                for row in sheet.iter_rows():
                    for cell in row:
                        assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
    # every hostile name reached its branch's HTML escaped (line breaks shown as spaces)
    branch_html = "".join(m.html() for m in smtp_server.messages if (m.audience or "").startswith("branch:"))
    from html import escape
    for name in INJECTIONS.values():
        assert escape(name) in branch_html or " ".join(escape(name).split()) in branch_html, name
    audit = audit_mail(engine, smtp_server)
    fault_table.append({"case": "injection strings mailed", "db": engine.dialect.name, "faults": len(INJECTIONS) + 1,
                        "expected": "inert", "ended": "escaped, text cells" if not problems else "in a header",
                        "lost": audit.lost, "duplicates": audit.duplicates, "mislabelled": audit.mislabelled,
                        "mismatched": problems})
    assert problems == 0 and (audit.lost, audit.duplicates, audit.mislabelled) == (0, 0, 0)
