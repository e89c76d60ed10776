"""The warehouse schema (data-contract.md). Owned by the Alembic migrations in
``vbp_monitor/migrations``; this module is the description the code and the migrations
share, never a ``create_all`` at import time.

Money and quantities are NUMERIC (exact in PostgreSQL). SQLite stores them with REAL
affinity, so rule SQL compares with a tolerance far below the contract's 4 decimals
(``:eps``): a value exactly at a threshold never alerts on either database.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Collection
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
    select,
    text,
    union,
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
TEXT, DATE, INT, MONEY, QUANTITY, RATIO, BOOL = (
    contract.TEXT, contract.DATE, contract.INT, contract.MONEY, contract.QUANTITY, contract.RATIO, contract.BOOL,
)
_TYPE_OF_KIND: dict[str, Any] = {
    TEXT: Text, DATE: Date, contract.TIMESTAMP: DateTime, INT: Integer,
    MONEY: Money, QUANTITY: Quantity, RATIO: Ratio, BOOL: Boolean,
    "timestamptz": DateTime(timezone=True),  # when the pipeline did something (derived tables)
}


def _table(name: str, key: tuple[str, ...], columns: dict[str, str], optional: frozenset[str] | tuple = (),
           *extra) -> Table:
    """A table from column kinds (the contract's vocabulary): key columns form the primary
    key, ``optional`` columns may be NULL, every other column is NOT NULL."""
    return Table(name, metadata, *[
        Column(column, _TYPE_OF_KIND[kind], primary_key=column in key,
               nullable=column in optional and column not in key)
        for column, kind in columns.items()
    ], *extra)


def _inbound(name: str, *derived) -> Table:
    spec = contract.FILES[name]
    return _table(name, spec.key, spec.columns, spec.optional_columns, *derived)


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
supplier_sanctions = _inbound("supplier_sanctions")
baseline_prices = _inbound("baseline_prices")

INBOUND_TABLES = (
    branches, institutions, batches, products, agreements, orders, offline_filings,
    payments, prepayments, volume_reports, annual_reports, distributors, holidays,
    supplier_sanctions, baseline_prices,
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
work_calendar = _table(
    "work_calendar", ("day",), {
        "day": DATE, "day_ordinal": INT, "is_workday": BOOL,
        # number of working days on or before this day (since the table's first day)
        "workday_seq": INT,
        "next_workday": DATE,  # first working day strictly after
        "month_start": DATE, "month_end": DATE, "next_month_end": DATE,
        "source": TEXT,  # statutory | override | fallback
    }, (),
    UniqueConstraint("day_ordinal"),
    Index("ix_work_calendar_workday_seq", "workday_seq"),
)

# Cycle month k of an agreement year starting period_start (domain.md › cycle month k).
cycle_month_calendar = _table("cycle_month_calendar", ("period_start", "cycle_month"), {
    "period_start": DATE, "cycle_month": INT, "month_start": DATE, "month_end": DATE,
})

# ---------------------------------------------------------------- derived facts
# Two caches of one GROUP BY pass each, rebuilt from the orders whenever a source changes.
# segment_start splits a month at agreement period boundaries so partial months are exact.
# No key on the facts: a month is written whole by one transaction, which lists it first in
# its *_months index (whose key makes a concurrent build of the same month fail and retry).
# The judged month's purchases in full detail: every monthly rule reads them.
purchase_facts = Table(
    "purchase_facts", metadata,
    *[Column(name, _TYPE_OF_KIND[kind], nullable=False) for name, kind in {
        "month_start": DATE, "segment_start": DATE, "institution_code": TEXT, "product_code": TEXT,
        "channel": TEXT, "unit_price": MONEY, "quantity": QUANTITY, "amount": MONEY, "line_count": INT,
    }.items()],
    Index("ix_purchase_facts_month_start", "month_start"),
)
purchase_facts_months = _table(
    "purchase_facts_months", ("month_start",), {"month_start": DATE, "built_at": "timestamptz", "line_count": INT})

# Only what the cumulative figures read of every month of an agreement year: platform
# purchases of selected products, by segment, institution and product (a quarter of the
# full facts' rows: no price, no channel, no other product).
selected_purchase_facts = Table(
    "selected_purchase_facts", metadata,
    *[Column(name, _TYPE_OF_KIND[kind], nullable=False) for name, kind in {
        "month_start": DATE, "segment_start": DATE, "institution_code": TEXT, "product_code": TEXT,
        "quantity": QUANTITY, "line_count": INT,
    }.items()],
    # no index: the institution file reads every month of it, and upkeep of an index on the
    # month cost a sixth of a cold build (13.8 s → 11.2 s at 1,000,000 lines a month)
)
selected_purchase_facts_months = _table(
    "selected_purchase_facts_months", ("month_start",),
    {"month_start": DATE, "built_at": "timestamptz", "line_count": INT})
# Cleared whenever a source of theirs changes: the months of the orders an ingest changed, or
# every month when products, batches or agreements change (ingest.after_load).
FACTS_CACHE = (purchase_facts, purchase_facts_months, selected_purchase_facts, selected_purchase_facts_months)
FACTS_INDEXES = (purchase_facts_months, selected_purchase_facts_months)


def clear_facts_cache(conn, months: Collection[dt.date] | None = None) -> None:
    """Clear both facts caches in the caller's transaction: every month (None), or only the
    months whose first days ``months`` gives (an empty collection clears nothing).

    Every month: PostgreSQL truncates them: deleting row by row the millions of facts a
    province's runs cached would cost an ingest seconds and leave as many dead rows. The lock
    TRUNCATE holds until the caller commits also makes a facts build that started before it
    finish first (its facts, of the old rows, are then truncated too) and one that starts
    after it wait for the new rows.

    Some months: their facts and index rows are deleted. On PostgreSQL the two indexes are
    first locked IN SHARE ROW EXCLUSIVE MODE until the caller commits, for the same two
    outcomes: a build writes its index first (ROW EXCLUSIVE, held to its commit), so one in
    flight commits before the lock is granted and the DELETEs after it see its facts, of the
    old rows; one that starts later waits on its index until the caller commits, then reads
    the new rows. Without the lock, a build that listed a month before the DELETE could
    commit facts of the old rows after it (a DELETE does not see uncommitted rows), and they
    would stay cached. When the months cover every month built, PostgreSQL truncates."""
    postgresql = conn.dialect.name == "postgresql"
    if months is not None:
        months = sorted({month.replace(day=1) for month in months})
        if not months:
            return
        some = True
        if postgresql:
            conn.execute(text(f"LOCK TABLE {', '.join(index.name for index in FACTS_INDEXES)} "
                              "IN SHARE ROW EXCLUSIVE MODE"))
            built = set(conn.execute(union(*(select(index.c.month_start) for index in FACTS_INDEXES))).scalars())
            some = not built <= set(months)  # (else truncated below: no dead rows)
        if some:
            for table in FACTS_CACHE:
                conn.execute(table.delete().where(table.c.month_start.in_(months)))
            return
    if postgresql:
        conn.execute(text("TRUNCATE " + ", ".join(table.name for table in FACTS_CACHE)))
    else:
        for table in FACTS_CACHE:
            conn.execute(table.delete())

# 一院一档: one row per active agreement and month.
institution_file_metrics = _table(
    "institution_file_metrics", ("period", "agreement_id"), {
        "period": TEXT, "agreement_id": TEXT, "institution_code": TEXT, "branch_code": TEXT,
        "batch_code": TEXT, "generic_name": TEXT, "as_of_date": DATE,
        "agreed_quantity": QUANTITY, "selected_quantity": QUANTITY, "selected_amount": MONEY,
        "same_generic_quantity": QUANTITY, "same_generic_amount": MONEY,
        "selected_quantity_share": RATIO, "selected_amount_share": RATIO,
        "non_selected_quantity": QUANTITY, "non_selected_amount": MONEY,
        "cumulative_selected_quantity": QUANTITY, "completion_rate": RATIO, "time_progress": RATIO,
        # days of the agreement year up to as_of_date (both ends), and of the whole year
        "elapsed_days": INT, "total_days": INT,
    }, ("selected_quantity_share", "selected_amount_share", "completion_rate", "elapsed_days", "total_days"),
)

prepayment_ledger = _table(
    "prepayment_ledger", ("institution_code", "batch_code", "period_start", "milestone_month"), {
        "institution_code": TEXT, "batch_code": TEXT, "period_start": DATE, "milestone_month": INT,
        "period": TEXT, "branch_code": TEXT, "period_end": DATE, "milestone_day": DATE, "profile": TEXT,
        "agreed_amount_total": MONEY, "disbursed": MONEY, "recovered": MONEY,
        "required_disbursement": MONEY, "required_recovery": MONEY,
        "disbursement_gap": MONEY, "recovery_gap": MONEY,
    })

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

# Documents mailed once per period (notify/mailer.py › send_documents): one row per document
# and recipient address ('<audience>|<address>') once the server accepted it; while an
# attempt sends it, message_id is its claim ('claim:<token>').
document_deliveries = Table(
    "document_deliveries", metadata,
    Column("document_key", Text, primary_key=True),
    Column("recipient", Text, primary_key=True),
    Column("dag_id", Text, nullable=False),
    Column("period", Text, nullable=False),
    Column("audience", Text, nullable=False),
    Column("files", Text),
    Column("run_id", Text),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    Column("message_id", Text),
)
