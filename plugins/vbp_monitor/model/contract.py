"""The inbound files of data-contract.md: columns, types and primary keys.

Validation rules (enums, ranges, references, cross-column checks) live in the GX suites
under include/expectations/; this module only says how to read each column and which
columns the warehouse derives from them.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from vbp_monitor.core.prc_calendar import add_months

# column kinds
TEXT, DATE, TIMESTAMP, INT, MONEY, QUANTITY, RATIO, BOOL = (
    "text", "date", "timestamp", "int", "money", "quantity", "ratio", "bool",
)


@dataclass(frozen=True)
class FileSpec:
    name: str  # file stem = table name
    key: tuple[str, ...]
    columns: dict[str, str]  # column -> kind, in the contract's order
    optional_columns: frozenset[str] = field(default_factory=frozenset)  # values may be empty
    optional_file: bool = False

    @property
    def table(self) -> str:
        return self.name


FILES: dict[str, FileSpec] = {spec.name: spec for spec in [
    FileSpec("branches", ("branch_code",), {
        "branch_code": TEXT, "branch_name": TEXT, "level": TEXT, "emails": TEXT,
    }, frozenset({"emails"})),
    FileSpec("institutions", ("institution_code",), {
        "institution_code": TEXT, "institution_name": TEXT, "branch_code": TEXT,
        "ownership": TEXT, "grade": TEXT,
    }, frozenset({"grade"})),
    FileSpec("batches", ("batch_code",), {
        "batch_code": TEXT, "batch_name": TEXT, "level": TEXT, "category": TEXT,
        "start_date": DATE, "cycle_months": INT, "report_deadline": DATE,
    }, frozenset({"report_deadline"})),
    FileSpec("products", ("product_code",), {
        "product_code": TEXT, "generic_name": TEXT, "dosage_form": TEXT, "specification": TEXT,
        "manufacturer": TEXT, "category": TEXT, "consistency_passed": BOOL, "is_selected": BOOL,
        "batch_code": TEXT, "selected_price": MONEY,
    }, frozenset({"dosage_form", "specification", "batch_code", "selected_price"})),
    FileSpec("agreements", ("agreement_id",), {
        "agreement_id": TEXT, "institution_code": TEXT, "batch_code": TEXT, "generic_name": TEXT,
        "period_start": DATE, "period_end": DATE, "agreed_quantity": QUANTITY,
        "agreed_ratio": RATIO, "agreed_amount": MONEY,
    }),
    FileSpec("orders", ("order_id",), {
        "order_id": TEXT, "institution_code": TEXT, "product_code": TEXT,
        "distributor_code": TEXT, "channel": TEXT, "order_time": TIMESTAMP, "quantity": QUANTITY,
        "unit_price": MONEY, "amount": MONEY, "response_time": TIMESTAMP,
        "acceptance_date": DATE, "cancelled": BOOL,
    }, frozenset({"distributor_code", "response_time", "acceptance_date"})),
    FileSpec("offline_filings", ("order_id",), {"order_id": TEXT, "filed_date": DATE}),
    FileSpec("payments", ("payment_id",), {
        "payment_id": TEXT, "order_id": TEXT, "payment_date": DATE, "amount": MONEY,
    }),
    FileSpec("prepayments", ("txn_id",), {
        "txn_id": TEXT, "institution_code": TEXT, "batch_code": TEXT, "txn_date": DATE,
        "txn_type": TEXT, "amount": MONEY,
    }),
    FileSpec("volume_reports", ("report_id",), {
        "report_id": TEXT, "institution_code": TEXT, "batch_code": TEXT, "generic_name": TEXT,
        "reported_quantity": QUANTITY, "explanation": TEXT, "report_date": DATE,
    }, frozenset({"explanation"})),
    FileSpec("annual_reports", ("branch_code", "report_year"), {
        "branch_code": TEXT, "report_year": INT, "submitted_at": TIMESTAMP, "file_name": TEXT,
    }),
    FileSpec("distributors", ("distributor_code",), {
        "distributor_code": TEXT, "distributor_name": TEXT, "emails": TEXT,
    }, frozenset({"emails"}), optional_file=True),
    FileSpec("holidays", ("day",), {"day": DATE, "is_workday": BOOL}, optional_file=True),
    # 失信企业名单 (seed 004 §二(二)); a blank sanction_end means the profile's sanction_years
    FileSpec("supplier_sanctions", ("manufacturer", "sanction_start"), {
        "manufacturer": TEXT, "sanction_start": DATE, "sanction_end": DATE, "reason": TEXT,
    }, frozenset({"sanction_end", "reason"}), optional_file=True),
    # 集采前基期价格, for the savings-retention estimate (DAG 8)
    FileSpec("baseline_prices", ("batch_code", "generic_name"), {
        "batch_code": TEXT, "generic_name": TEXT, "baseline_price": MONEY,
    }, optional_file=True),
]}

# Load order: referenced tables first.
LOAD_ORDER = (
    "holidays", "branches", "institutions", "batches", "products", "agreements", "orders",
    "offline_filings", "payments", "prepayments", "volume_reports", "annual_reports",
    "distributors", "supplier_sanctions", "baseline_prices",
)

TRUE_VALUES = {"true", "1", "是", "t", "yes", "y"}
FALSE_VALUES = {"false", "0", "否", "f", "no", "n"}


def parse_bool(value) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_VALUES:
        return True
    if text in FALSE_VALUES:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def cycle_end_date(start_date: dt.date, cycle_months: int) -> dt.date:
    """Last day of a batch's procurement cycle."""
    return add_months(start_date, int(cycle_months)) - dt.timedelta(days=1)


def derive(table: str, row: dict) -> dict:
    """Add the warehouse's derived columns to one typed row (see schema.py)."""
    if table == "batches":
        row["cycle_end_date"] = cycle_end_date(row["start_date"], row["cycle_months"])
    elif table == "orders":
        order_time: dt.datetime = row["order_time"]
        row["order_date"] = order_time.date()
        response = row.get("response_time")
        row["response_hours"] = (
            None if response is None
            else (Decimal((response - order_time).total_seconds()) / Decimal(3600)).quantize(Decimal("0.000001"))
        )
    return row
