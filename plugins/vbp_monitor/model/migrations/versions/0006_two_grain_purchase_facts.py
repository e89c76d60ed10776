"""purchase facts in two grains: the judged month in full, the agreement years' selected purchases

The facts are a cache (rebuilt from the orders whenever a source changes): the old tables
are dropped and created anew. ``purchase_facts`` loses its six-column key (a month is
written whole by one transaction that lists it first in ``purchase_facts_months``) and
keeps an index on the month; ``selected_purchase_facts`` (+ its ``_months`` index) holds
the platform purchases of selected products that the cumulative figures sum.

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
    op.create_index('ix_selected_purchase_facts_month_start', 'selected_purchase_facts', ['month_start'])
    _months('selected_purchase_facts_months')


def downgrade() -> None:
    op.drop_table('selected_purchase_facts_months')
    op.drop_table('selected_purchase_facts')
    op.drop_table('purchase_facts_months')
    op.drop_table('purchase_facts')
    op.create_table('purchase_facts', *_facts_columns(),
    sa.PrimaryKeyConstraint('month_start', 'segment_start', 'institution_code', 'product_code', 'channel', 'unit_price')
    )
    _months('purchase_facts_months')
