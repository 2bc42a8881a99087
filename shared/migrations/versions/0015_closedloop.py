"""Closed loop: what a conversion is worth.

A conversion to opportunity or customer may carry an amount and its ISO 4217 currency: kept
on the handoff per stage (what the API shows) and on the feedback row (what the funnel sums
as pipeline and revenue, in the window the feedback was given).

Revision ID: 0015
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for stage in ("opportunity", "customer"):
        op.add_column("handoffs", sa.Column(f"{stage}_amount", sa.Numeric(18, 2)))
        op.add_column("handoffs", sa.Column(f"{stage}_currency", sa.String(3)))
    op.add_column("handoff_feedback", sa.Column("amount", sa.Numeric(18, 2)))
    op.add_column("handoff_feedback", sa.Column("currency", sa.String(3)))


def downgrade() -> None:
    op.drop_column("handoff_feedback", "currency")
    op.drop_column("handoff_feedback", "amount")
    for stage in ("customer", "opportunity"):
        op.drop_column("handoffs", f"{stage}_currency")
        op.drop_column("handoffs", f"{stage}_amount")
