"""institution file: elapsed_days and total_days of the agreement year

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('institution_file_metrics', schema=None) as batch_op:
        batch_op.add_column(sa.Column('elapsed_days', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('total_days', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('institution_file_metrics', schema=None) as batch_op:
        batch_op.drop_column('total_days')
        batch_op.drop_column('elapsed_days')
