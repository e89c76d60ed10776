"""institution file as people read it: the view institution_file

The institution file (一院一档) rows joined to their agreement (period, agreed ratio), the
institution's and the batch's names: what the agreement rules and the execution report
read, written once. A later migration that alters institution_file_metrics (or the joined
tables' columns) drops the view first and creates it again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

VIEW = """
CREATE VIEW institution_file AS
SELECT m.*, a.period_start, a.period_end, a.agreed_ratio, i.institution_name, b.batch_name
FROM institution_file_metrics m
JOIN agreements a ON a.agreement_id = m.agreement_id
JOIN institutions i ON i.institution_code = m.institution_code
JOIN batches b ON b.batch_code = m.batch_code
"""


def upgrade() -> None:
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW institution_file")
