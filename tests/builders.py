"""Test data builders, in one place: typed rows, a small city, landing folders, test databases.

* ``city()`` — two branches (B1, B2), public/military/private institutions, one drug batch;
  ``full_city()`` adds a row or two for every other contract file.
* ``seed(conn, tables)`` stores rows the way ingest would (typed, derived).
* ``write_landing(folder, tables)`` writes them as contract files (CSV in several encodings,
  XLSX) for ingest tests.
* ``pg_database(name)`` creates (or drops) a database on the test PostgreSQL server.
* ``order()``, ``agreement()``, ``product()``, ``batch()``, ``institution()`` rows, ``run_for(month)``
  and readers of the alerts and the institution file, for the rule tests.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
from decimal import Decimal
from pathlib import Path

from sqlalchemy import create_engine, insert, select, text

from vbp_monitor.core.periods import judged_month
from vbp_monitor.core.prc_calendar import add_months
from vbp_monitor.model import contract
from vbp_monitor.model.calendar_tables import ensure_cycle_month_calendar
from vbp_monitor.model.schema import alerts, institution_file_metrics, metadata
from vbp_monitor.orchestration.run_context import RunContext
from vbp_monitor.rules.monitoring import DAG_ID as MONITORING_DAG_ID

# PostgreSQL is the real server of every machine of this project (127.0.0.1:5432, trust
# auth, user postgres); each test gets its own database. VBP_TEST_PG_URL points elsewhere.
PG_ADMIN_URL = os.environ.get("VBP_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


# ---------------------------------------------------------------- databases
def pg_database(name: str, drop: bool = False, template: str | None = None) -> str:
    """Create (or drop) database ``name`` on the test server, optionally as a copy of
    database ``template``; returns its URL."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if drop:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


# ---------------------------------------------------------------- rows in the warehouse
def typed_row(table: str, row: dict) -> dict:
    """Parse CSV-like values with the contract's column kinds; missing optional → None."""
    spec = contract.FILES[table]
    out = {}
    for column, kind in spec.columns.items():
        value = row.get(column)
        if value is None or (isinstance(value, str) and value == ""):
            out[column] = None
            continue
        if kind == contract.DATE and isinstance(value, str):
            value = dt.date.fromisoformat(value)
        elif kind == contract.TIMESTAMP and isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        elif kind in (contract.MONEY, contract.QUANTITY, contract.RATIO):
            value = Decimal(str(value))
        elif kind == contract.INT:
            value = int(value)
        elif kind == contract.BOOL:
            value = contract.parse_bool(value)
        out[column] = value
    return out


def city(**extra) -> dict[str, list[dict]]:
    """A city with two branches (B1, B2), public/military/private institutions, one drug batch."""
    data = {
        "branches": [
            {"branch_code": "CITY", "branch_name": "市医保局", "level": "city", "emails": "city@example.org"},
            {"branch_code": "B1", "branch_name": "章贡分局", "level": "branch", "emails": "b1@example.org"},
            {"branch_code": "B2", "branch_name": "南康分局", "level": "branch",
             "emails": "b2@example.org;b2b@example.org"},
        ],
        "institutions": [
            {"institution_code": "H1", "institution_name": "第一人民医院", "branch_code": "B1", "ownership": "public"},
            {"institution_code": "H2", "institution_name": "南康区人民医院", "branch_code": "B2",
             "ownership": "public"},
            {"institution_code": "M1", "institution_name": "部队医院", "branch_code": "B1", "ownership": "military"},
            {"institution_code": "P1", "institution_name": "仁爱民营医院", "branch_code": "B2", "ownership": "private"},
        ],
        "batches": [
            {"batch_code": "NB1", "batch_name": "第一批国家集采", "level": "national", "category": "drug",
             "start_date": "2025-01-01", "cycle_months": 24, "report_deadline": "2024-11-20"},
        ],
        "products": [
            {"product_code": "P-AML-S", "generic_name": "氨氯地平", "manufacturer": "甲药业", "category": "drug",
             "consistency_passed": "true", "is_selected": "true", "batch_code": "NB1", "selected_price": "0.50"},
            {"product_code": "P-AML-N", "generic_name": "氨氯地平", "manufacturer": "乙药业", "category": "drug",
             "consistency_passed": "true", "is_selected": "false"},
        ],
    }
    for key, rows in extra.items():
        data.setdefault(key, []).extend(rows)
    return data


def seed(conn, tables: dict[str, list[dict]]) -> None:
    """Insert rows the way ingest would store them (typed, with derived columns).

    Values may be strings as in the CSV files; they are parsed with the contract's kinds.
    Afterwards the cycle-month calendar is refreshed.
    """
    for name in contract.LOAD_ORDER:
        rows = tables.get(name)
        if not rows:
            continue
        table = metadata.tables[name]
        conn.execute(insert(table), [contract.derive(name, typed_row(name, row)) for row in rows])
    ensure_cycle_month_calendar(conn)


# ---------------------------------------------------------------- landing folders
def full_city(**extra) -> dict[str, list[dict]]:
    """``city()`` plus a row or two for every other contract file."""
    data = city(
        agreements=[agreement("A-H1", "H1", quantity=12000, ratio="0.8", amount="6000"),
                    agreement("A-H2", "H2", quantity=6000, ratio="0.7", amount="3000")],
        orders=[
            {"order_id": "O-1", "institution_code": "H1", "product_code": "P-AML-S", "distributor_code": "D1",
             "channel": "platform", "order_time": "2025-02-03 09:30:00", "quantity": "1000", "unit_price": "0.50",
             "amount": "500.00", "response_time": "2025-02-03 15:00:00", "acceptance_date": "2025-02-05",
             "cancelled": "false"},
            {"order_id": "O-2", "institution_code": "H2", "product_code": "P-AML-N", "distributor_code": "D1",
             "channel": "offline", "order_time": "2025-02-10 10:00:00", "quantity": "200", "unit_price": "0.9",
             "amount": "180", "response_time": "", "acceptance_date": "", "cancelled": "否"},
            {"order_id": "O-3", "institution_code": "P1", "product_code": "P-AML-S", "distributor_code": "",
             "channel": "platform", "order_time": "2025-02-11 08:00:00", "quantity": "3", "unit_price": "0.5",
             "amount": "1.5", "response_time": "2025-02-12 08:00:00", "acceptance_date": "2025-02-12",
             "cancelled": "1"},
        ],
        offline_filings=[{"order_id": "O-2", "filed_date": "2025-02-14"}],
        payments=[{"payment_id": "PAY-1", "order_id": "O-1", "payment_date": "2025-03-10", "amount": "500"}],
        prepayments=[
            {"txn_id": "T-1", "institution_code": "H1", "batch_code": "NB1", "txn_date": "2025-01-10",
             "txn_type": "disbursement", "amount": "1800"},
            {"txn_id": "T-2", "institution_code": "H1", "batch_code": "NB1", "txn_date": "2025-03-20",
             "txn_type": "recovery", "amount": "180"},
        ],
        volume_reports=[
            {"report_id": "R-1", "institution_code": "H1", "batch_code": "NB1", "generic_name": "氨氯地平",
             "reported_quantity": "12000", "explanation": "", "report_date": "2024-11-15"},
        ],
        annual_reports=[
            {"branch_code": "B1", "report_year": "2024", "submitted_at": "2025-01-10 16:20:00",
             "file_name": "B1_2024.docx"},
        ],
        distributors=[{"distributor_code": "D1", "distributor_name": "国药配送", "emails": "d1@example.org"}],
        holidays=[{"day": "2025-02-08", "is_workday": "是"}],
        supplier_sanctions=[{"manufacturer": "乙药业", "sanction_start": "2024-06-01", "sanction_end": "",
                             "reason": "拒不履行供货协议"}],
        baseline_prices=[{"batch_code": "NB1", "generic_name": "氨氯地平", "baseline_price": "0.80"}],
    )
    for key, rows in extra.items():
        data.setdefault(key, []).extend(rows)
    return data


def header_of(name: str) -> list[str]:
    return list(contract.FILES[name].columns)


def csv_bytes(header: list[str], rows: list[dict], encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if row.get(name) is None else row.get(name) for name in header])
    return buffer.getvalue().encode(encoding)


def write_csv(folder: Path, name: str, rows: list[dict], encoding: str = "utf-8",
              header: list[str] | None = None) -> Path:
    """``encoding``: 'utf-8', 'utf-8-sig' (with BOM) or 'gb18030'."""
    path = Path(folder) / f"{name}.csv"
    path.write_bytes(csv_bytes(header or header_of(name), rows, encoding))
    return path


def write_xlsx(folder: Path, name: str, rows: list[dict], header: list[str] | None = None,
               typed: bool = False) -> Path:
    """First sheet = the file. ``typed``: write dates/numbers as Excel values, as a
    person saving from Excel would, instead of text."""
    from openpyxl import Workbook

    header = header or header_of(name)
    kinds = contract.FILES[name].columns
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = name
    sheet.append(header)
    for row in rows:
        values = []
        for column in header:
            value = row.get(column)
            if typed and value not in (None, ""):
                kind = kinds.get(column)
                if kind == contract.DATE:
                    value = dt.datetime.fromisoformat(value)
                elif kind == contract.TIMESTAMP:
                    value = dt.datetime.fromisoformat(value)
                elif kind == contract.INT:
                    value = int(value)
                elif kind in (contract.MONEY, contract.QUANTITY, contract.RATIO):
                    value = float(Decimal(value))
            values.append(None if value == "" else value)
        sheet.append(values)
    path = Path(folder) / f"{name}.xlsx"
    workbook.save(path)
    return path


def write_landing(folder: Path, tables: dict[str, list[dict]], formats: dict[str, str] | None = None) -> Path:
    """Write every table as a contract file. ``formats``: name -> 'utf-8' (default),
    'utf-8-sig', 'gb18030', 'xlsx' or 'xlsx-typed'."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    formats = formats or {}
    for name, rows in tables.items():
        fmt = formats.get(name, "utf-8")
        for stale in (folder / f"{name}.csv", folder / f"{name}.xlsx"):
            stale.unlink(missing_ok=True)
        if fmt.startswith("xlsx"):
            write_xlsx(folder, name, rows, typed=fmt == "xlsx-typed")
        else:
            write_csv(folder, name, rows, encoding=fmt)
    reports = folder / "annual_reports"
    reports.mkdir(exist_ok=True)
    for row in tables.get("annual_reports", []):
        target = reports / row["file_name"]
        if not target.exists() and target.suffix in (".md", ".txt"):
            target.write_text("一、总体进展\n二、具体工作落实情况\n三、存在的问题\n四、下一步打算\n", encoding="utf-8")
    return folder


# ---------------------------------------------------------------- rule tests (monthly monitoring's city)
GENERIC = "氨氯地平"


def order(order_id, institution, quantity, when, product="P-AML-S", channel="platform",
          price="0.50", cancelled="false", acceptance=None):
    quantity, price = Decimal(str(quantity)), Decimal(str(price))
    if len(when) == 10:
        when += " 10:00:00"
    return {"order_id": order_id, "institution_code": institution, "product_code": product,
            "distributor_code": "D1", "channel": channel, "order_time": when,
            "quantity": str(quantity), "unit_price": str(price), "amount": str(quantity * price),
            "cancelled": cancelled, "acceptance_date": acceptance}


def agreement(agreement_id, institution, start="2025-01-01", end="2025-12-31", quantity=1000,
              ratio="0.6", batch="NB1", generic=GENERIC, amount="500"):
    return {"agreement_id": agreement_id, "institution_code": institution, "batch_code": batch,
            "generic_name": generic, "period_start": start, "period_end": end,
            "agreed_quantity": str(quantity), "agreed_ratio": str(ratio), "agreed_amount": amount}


def purchase(order_id, institution, quantity, when, product="P-AML-S", channel="platform", cancelled="false"):
    """An order line at 0.50 a box (the entry sweep's and volume review's orders)."""
    return {"order_id": order_id, "institution_code": institution, "product_code": product,
            "distributor_code": "D1", "channel": channel, "order_time": when,
            "quantity": str(quantity), "unit_price": "0.50",
            "amount": str(Decimal(str(quantity)) * Decimal("0.50")), "cancelled": cancelled}

def product(code, generic=GENERIC, manufacturer="丙药业", selected=False, price=None, batch=None,
            category="drug", passed=True):
    return {"product_code": code, "generic_name": generic, "manufacturer": manufacturer,
            "category": category, "consistency_passed": "true" if passed else "false",
            "is_selected": "true" if selected else "false", "batch_code": batch,
            "selected_price": price}


def batch(code, start, months=24, category="drug"):
    return {"batch_code": code, "batch_name": f"批次{code}", "level": "provincial",
            "category": category, "start_date": start, "cycle_months": months}


def institution(code, branch="B1", ownership="public"):
    return {"institution_code": code, "institution_name": f"{code}医院", "branch_code": branch,
            "ownership": ownership}


def run_for(month: str, run_id: str = "test", **kwargs) -> RunContext:
    """The run that judges ``month`` ('YYYY-MM'): D = the first day of the next month."""
    first = dt.date.fromisoformat(month + "-01")
    return RunContext.for_test(MONITORING_DAG_ID, judged_month(add_months(first, 1)), run_id=run_id, **kwargs)


def judge_and_mail(engine, tables: dict[str, list[dict]], run: RunContext, judge):
    """Seed ``tables``, judge ``run`` with a DAG's ``judge`` (default profile) and mail the
    branches; the judged result (its attachments) for the test to look at or mail again."""
    from vbp_monitor.core.profiles import load_profile
    from vbp_monitor.notify.mailer import notify_run

    with engine.begin() as conn:
        seed(conn, tables)
    judged = judge(engine, run, load_profile("default"))
    notify_run(engine, run, attachments=judged.attachments)
    return judged


def open_alerts(engine, rule_code=None) -> list[dict]:
    query = select(alerts).where(alerts.c.status == "open")
    if rule_code:
        query = query.where(alerts.c.rule_code == rule_code)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query.order_by(alerts.c.alert_key)).mappings()]


def all_alerts(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(alerts).order_by(alerts.c.alert_key)).mappings().all()
    return [dict(row) for row in rows]


def by_subject(rows, *fields) -> dict:
    return {tuple(row[f] for f in fields) if len(fields) > 1 else row[fields[0]]: row for row in rows}


def metrics(engine, period: str) -> dict[str, dict]:
    query = select(institution_file_metrics).where(institution_file_metrics.c.period == period)
    with engine.connect() as conn:
        return {row["agreement_id"]: dict(row) for row in conn.execute(query).mappings()}


def num(value) -> Decimal:
    """A stored figure as an exact Decimal rounded to 4 places (SQLite gives floats)."""
    if isinstance(value, float):
        value = repr(value)
    return Decimal(value).quantize(Decimal("0.0001"))


def business(rows: list[dict]) -> list[dict]:
    """Alert rows without their audit columns (operations.md › Idempotency)."""
    audit = {"alert_id", "dag_id", "run_id", "first_raised_at", "last_raised_at", "notified_at"}
    return [{k: v for k, v in row.items() if k not in audit} for row in rows]


def sheet_rows(path, sheet_name: str) -> list[list]:
    """The rows of one sheet of a written workbook, as values."""
    import openpyxl

    sheet = openpyxl.load_workbook(path)[sheet_name]
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def order_line(order_id: str, **changes) -> dict:
    """One orders.csv row of the small city (H1 buys P-AML-S on the platform), as text."""
    row = {"order_id": order_id, "institution_code": "H1", "product_code": "P-AML-S", "distributor_code": "D1",
           "channel": "platform", "order_time": "2025-02-20 09:00:00", "quantity": "10", "unit_price": "0.5",
           "amount": "5", "response_time": "", "acceptance_date": "", "cancelled": "false"}
    row.update(changes)
    return row
