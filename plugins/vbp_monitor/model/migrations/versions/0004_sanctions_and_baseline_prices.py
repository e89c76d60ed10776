"""supplier_sanctions (失信企业名单) and baseline_prices (集采前基期价格): two optional files

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('supplier_sanctions',
    sa.Column('manufacturer', sa.Text(), nullable=False),
    sa.Column('sanction_start', sa.Date(), nullable=False),
    sa.Column('sanction_end', sa.Date(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('manufacturer', 'sanction_start')
    )
    op.create_table('baseline_prices',
    sa.Column('batch_code', sa.Text(), nullable=False),
    sa.Column('generic_name', sa.Text(), nullable=False),
    sa.Column('baseline_price', sa.Numeric(precision=20, scale=4), nullable=False),
    sa.PrimaryKeyConstraint('batch_code', 'generic_name')
    )


def downgrade() -> None:
    op.drop_table('baseline_prices')
    op.drop_table('supplier_sanctions')
