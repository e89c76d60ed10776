"""document_deliveries: documents mailed once per period (the monthly progress report)

One row per document and recipient address once the SMTP server accepted the email that
carried it (``message_id`` = ``claim:<token>`` while an attempt is sending it): a rerun of
the period mails nothing, a retry after the server was down sends what is missing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('document_deliveries',
    sa.Column('document_key', sa.Text(), nullable=False),
    sa.Column('recipient', sa.Text(), nullable=False),
    sa.Column('dag_id', sa.Text(), nullable=False),
    sa.Column('period', sa.Text(), nullable=False),
    sa.Column('audience', sa.Text(), nullable=False),
    sa.Column('files', sa.Text(), nullable=True),
    sa.Column('run_id', sa.Text(), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('message_id', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('document_key', 'recipient')
    )


def downgrade() -> None:
    op.drop_table('document_deliveries')
