"""Write small contract landing folders (CSV in several encodings, XLSX) for ingest tests."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from helpers import city
from vbp_monitor.model import contract


def full_city(**extra) -> dict[str, list[dict]]:
    """``helpers.city()`` plus a row or two for every other contract file."""
    data = city(
        agreements=[
            {"agreement_id": "A-H1", "institution_code": "H1", "batch_code": "NB1", "generic_name": "氨氯地平",
             "period_start": "2025-01-01", "period_end": "2025-12-31", "agreed_quantity": "12000",
             "agreed_ratio": "0.8", "agreed_amount": "6000"},
            {"agreement_id": "A-H2", "institution_code": "H2", "batch_code": "NB1", "generic_name": "氨氯地平",
             "period_start": "2025-01-01", "period_end": "2025-12-31", "agreed_quantity": "6000",
             "agreed_ratio": "0.7", "agreed_amount": "3000"},
        ],
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
    import datetime as dt
    from decimal import Decimal

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
