"""The warehouse schema (data-contract.md). Owned by the Alembic migrations in
``vbp_monitor/migrations``; this module is the description the code and the migrations
share, never a ``create_all`` at import time.

Money and quantities are NUMERIC (exact in PostgreSQL). SQLite stores them with REAL
affinity, so rule SQL compares with a tolerance far below the contract's 4 decimals
(``:eps``): a value exactly at a threshold never alerts on either database.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from vbp_monitor.model import contract

metadata = MetaData()

Money = Numeric(20, 4)
Quantity = Numeric(20, 4)
Ratio = Numeric(12, 6)
# PostgreSQL: bigserial; SQLite only autoincrements INTEGER PRIMARY KEY.
SurrogateKey = BigInteger().with_variant(Integer(), "sqlite")

# ---------------------------------------------------------------- inbound tables
# One table per contract file, with the contract's columns in its order (model/contract.py:
# names, kinds, key, optional columns); the warehouse adds derived columns and indexes.
_TYPE_OF_KIND: dict[str, Any] = {
    contract.TEXT: Text, contract.DATE: Date, contract.TIMESTAMP: DateTime, contract.INT: Integer,
    contract.MONEY: Money, contract.QUANTITY: Quantity, contract.RATIO: Ratio, contract.BOOL: Boolean,
}


def _inbound(name: str, *derived) -> Table:
    spec = contract.FILES[name]
    columns: list[Column] = [
        Column(column, _TYPE_OF_KIND[kind], primary_key=column in spec.key,
               nullable=column in spec.optional_columns and column not in spec.key)
        for column, kind in spec.columns.items()
    ]
    return Table(name, metadata, *columns, *derived)


branches = _inbound("branches")
institutions = _inbound("institutions", Index("ix_institutions_branch_code", "branch_code"))
batches = _inbound(
    "batches",
    # derived at ingest: start_date + cycle_months months - 1 day (last day of the cycle)
    Column("cycle_end_date", Date, nullable=False),
)
products = _inbound("products", Index("ix_products_generic_name", "generic_name"))
agreements = _inbound("agreements", Index("ix_agreements_institution_batch", "institution_code", "batch_code"))
orders = _inbound(
    "orders",
    # derived at ingest: the day a purchase belongs to, and hours from order to response
    Column("order_date", Date, nullable=False),
    Column("response_hours", Numeric(20, 6)),
    Index("ix_orders_order_date", "order_date"),
    Index("ix_orders_institution_date", "institution_code", "order_date"),
    Index("ix_orders_acceptance_date", "acceptance_date"),
    # off-platform lines only (a few percent): the monthly filing rule reads them by day
    Index("ix_orders_offline_order_date", "order_date",
          sqlite_where=text("channel = 'offline'"), postgresql_where=text("channel = 'offline'")),
)
offline_filings = _inbound("offline_filings")
payments = _inbound("payments", Index("ix_payments_order_id", "order_id"))
prepayments = _inbound("prepayments", Index("ix_prepayments_institution_batch", "institution_code", "batch_code"))
volume_reports = _inbound("volume_reports")
annual_reports = _inbound("annual_reports")
distributors = _inbound("distributors")
holidays = _inbound("holidays")

INBOUND_TABLES = (
    branches, institutions, batches, products, agreements, orders, offline_filings,
    payments, prepayments, volume_reports, annual_reports, distributors, holidays,
)

# ---------------------------------------------------------------- ingest bookkeeping
quarantine = Table(
    "quarantine", metadata,
    Column("quarantine_id", SurrogateKey, primary_key=True, autoincrement=True),
    Column("source_file", Text, nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("row_key", Text),
    Column("raw_row", Text, nullable=False),
    Column("reasons", Text, nullable=False),
    Column("run_id", Text),
    Column("quarantined_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("source_file", "row_number", name="uq_quarantine_file_row"),
)

# ---------------------------------------------------------------- calendars (one calendar)
# A materialisation of vbp_monitor.core.prc_calendar so that rule SQL joins dates instead of
# calling dialect date functions. Rebuilt whenever holidays.csv is ingested.
work_calendar = Table(
    "work_calendar", metadata,
    Column("day", Date, primary_key=True),
    Column("day_ordinal", Integer, nullable=False, unique=True),
    Column("is_workday", Boolean, nullable=False),
    # number of working days on or before this day (since the table's first day)
    Column("workday_seq", Integer, nullable=False),
    Column("next_workday", Date, nullable=False),  # first working day strictly after
    Column("month_start", Date, nullable=False),
    Column("month_end", Date, nullable=False),
    Column("next_month_end", Date, nullable=False),
    Column("source", Text, nullable=False),  # statutory | override | fallback
    Index("ix_work_calendar_workday_seq", "workday_seq"),
)

# Cycle month k of an agreement year starting period_start (domain.md › cycle month k).
cycle_month_calendar = Table(
    "cycle_month_calendar", metadata,
    Column("period_start", Date, primary_key=True),
    Column("cycle_month", Integer, primary_key=True),
    Column("month_start", Date, nullable=False),
    Column("month_end", Date, nullable=False),
)

# ---------------------------------------------------------------- derived facts
# One GROUP BY pass over a month's order lines; every monthly rule reads this.
# segment_start splits a month at agreement period boundaries so partial months are exact.
purchase_facts = Table(
    "purchase_facts", metadata,
    Column("month_start", Date, primary_key=True),
    Column("segment_start", Date, primary_key=True),
    Column("institution_code", Text, primary_key=True),
    Column("product_code", Text, primary_key=True),
    Column("channel", Text, primary_key=True),
    Column("unit_price", Money, primary_key=True),
    Column("quantity", Quantity, nullable=False),
    Column("amount", Money, nullable=False),
    Column("line_count", Integer, nullable=False),
)

purchase_facts_months = Table(
    "purchase_facts_months", metadata,
    Column("month_start", Date, primary_key=True),
    Column("built_at", DateTime(timezone=True), nullable=False),
    Column("line_count", Integer, nullable=False),
)

# 一院一档: one row per active agreement and month.
institution_file_metrics = Table(
    "institution_file_metrics", metadata,
    Column("period", Text, primary_key=True),
    Column("agreement_id", Text, primary_key=True),
    Column("institution_code", Text, nullable=False),
    Column("branch_code", Text, nullable=False),
    Column("batch_code", Text, nullable=False),
    Column("generic_name", Text, nullable=False),
    Column("as_of_date", Date, nullable=False),
    Column("agreed_quantity", Quantity, nullable=False),
    Column("selected_quantity", Quantity, nullable=False),
    Column("selected_amount", Money, nullable=False),
    Column("same_generic_quantity", Quantity, nullable=False),
    Column("same_generic_amount", Money, nullable=False),
    Column("selected_quantity_share", Ratio),
    Column("selected_amount_share", Ratio),
    Column("non_selected_quantity", Quantity, nullable=False),
    Column("non_selected_amount", Money, nullable=False),
    Column("cumulative_selected_quantity", Quantity, nullable=False),
    Column("completion_rate", Ratio),
    Column("time_progress", Ratio, nullable=False),
    Column("elapsed_days", Integer),  # days of the agreement year up to as_of_date, both ends
    Column("total_days", Integer),  # days of the agreement year
)

prepayment_ledger = Table(
    "prepayment_ledger", metadata,
    Column("institution_code", Text, primary_key=True),
    Column("batch_code", Text, primary_key=True),
    Column("period_start", Date, primary_key=True),
    Column("milestone_month", Integer, primary_key=True),
    Column("period", Text, nullable=False),
    Column("branch_code", Text, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("milestone_day", Date, nullable=False),
    Column("profile", Text, nullable=False),
    Column("agreed_amount_total", Money, nullable=False),
    Column("disbursed", Money, nullable=False),
    Column("recovered", Money, nullable=False),
    Column("required_disbursement", Money, nullable=False),
    Column("required_recovery", Money, nullable=False),
    Column("disbursement_gap", Money, nullable=False),
    Column("recovery_gap", Money, nullable=False),
)

# ---------------------------------------------------------------- outbound
alerts = Table(
    "alerts", metadata,
    Column("alert_id", SurrogateKey, primary_key=True, autoincrement=True),
    Column("alert_key", Text, nullable=False, unique=True),
    Column("rule_code", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("period", Text, nullable=False),
    Column("branch_code", Text, nullable=False),
    Column("institution_code", Text),
    Column("batch_code", Text),
    Column("generic_name", Text),
    Column("product_code", Text),
    Column("order_id", Text),
    Column("category", Text),
    Column("source_file", Text),
    Column("milestone_month", Integer),
    Column("metric_value", Numeric(24, 6)),
    Column("threshold_value", Numeric(24, 6)),
    Column("message", Text, nullable=False),
    Column("dag_id", Text, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("first_raised_at", DateTime(timezone=True), nullable=False),
    Column("last_raised_at", DateTime(timezone=True), nullable=False),
    Column("notified_at", DateTime(timezone=True)),
    Index("ix_alerts_dag_period", "dag_id", "period"),
    Index("ix_alerts_notified_at", "notified_at"),
)

# One row per alert and audience ('branch:<code>', 'city', 'data_team') once the SMTP
# server accepted the email that carried it: a retry sends only what is still missing.
alert_deliveries = Table(
    "alert_deliveries", metadata,
    Column("alert_id", SurrogateKey, primary_key=True),
    Column("audience", Text, primary_key=True),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    Column("message_id", Text),
)
