"""purchase facts in two grains: the judged month in full, the agreement years' selected purchases

The facts are a cache (rebuilt from the orders whenever a source changes): the old tables
are dropped and created anew. ``purchase_facts`` loses its six-column key (a month is
written whole by one transaction that lists it first in ``purchase_facts_months``) and
keeps an index on the month; ``selected_purchase_facts`` (+ its ``_months`` index, and no
index of its own: it is read whole) holds the platform purchases of selected products that
the cumulative figures sum. The view
``facts_segment_days`` gives each calendar day the segment both builds group it in.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


# Each day's fact segment: the latest boundary on or before it in its own month. Boundaries:
# the first day of every month, every agreement's period_start and the day after its
# period_end (a figure from max(first day of M, period_start) to min(last day of M,
# period_end) is then an exact sum of whole segments). Read with a range on ``day``.
SEGMENT_DAYS_VIEW = """
CREATE VIEW facts_segment_days AS
WITH boundaries AS (
    SELECT a.period_start AS day
    FROM agreements a
    UNION
    SELECT next_day.day
    FROM agreements a
    JOIN work_calendar period_end ON period_end.day = a.period_end
    JOIN work_calendar next_day ON next_day.day_ordinal = period_end.day_ordinal + 1
    UNION
    SELECT wc.month_start
    FROM work_calendar wc
)
SELECT d.day, d.month_start, MAX(b.day) AS segment_start
FROM work_calendar d
JOIN boundaries b ON b.day <= d.day AND b.day >= d.month_start
GROUP BY d.day, d.month_start
"""


def _months(name: str) -> None:
    op.create_table(name,
    sa.Column('month_start', sa.Date(), nullable=False),
    sa.Column('built_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('line_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('month_start')
    )


def _facts_columns() -> list:
    return [
        sa.Column('month_start', sa.Date(), nullable=False),
        sa.Column('segment_start', sa.Date(), nullable=False),
        sa.Column('institution_code', sa.Text(), nullable=False),
        sa.Column('product_code', sa.Text(), nullable=False),
        sa.Column('channel', sa.Text(), nullable=False),
        sa.Column('unit_price', sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column('quantity', sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column('amount', sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column('line_count', sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    op.drop_table('purchase_facts')
    op.drop_table('purchase_facts_months')
    op.create_table('purchase_facts', *_facts_columns())
    op.create_index('ix_purchase_facts_month_start', 'purchase_facts', ['month_start'])
    _months('purchase_facts_months')
    op.create_table('selected_purchase_facts',
    sa.Column('month_start', sa.Date(), nullable=False),
    sa.Column('segment_start', sa.Date(), nullable=False),
    sa.Column('institution_code', sa.Text(), nullable=False),
    sa.Column('product_code', sa.Text(), nullable=False),
    sa.Column('quantity', sa.Numeric(precision=20, scale=4), nullable=False),
    sa.Column('line_count', sa.Integer(), nullable=False),
    )
    _months('selected_purchase_facts_months')
    op.execute(SEGMENT_DAYS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW facts_segment_days")
    op.drop_table('selected_purchase_facts_months')
    op.drop_table('selected_purchase_facts')
    op.drop_table('purchase_facts_months')
    op.drop_table('purchase_facts')
    op.create_table('purchase_facts', *_facts_columns(),
    sa.PrimaryKeyConstraint('month_start', 'segment_start', 'institution_code', 'product_code', 'channel', 'unit_price')
    )
    _months('purchase_facts_months')
