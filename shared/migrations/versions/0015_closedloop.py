"""Closed loop: what a conversion is worth, and where each lead came from.

A conversion to opportunity or customer may carry an amount and its ISO 4217 currency: kept
on the handoff per stage (what the API shows) and on the feedback row (what the funnel sums
as pipeline and revenue, in the window the feedback was given).

Touches: scoring keeps each lead's first, qualifying and last touch beside its row
(lead_touches); the lifecycle events carry them, and handoff keeps them on each handoff and
each funnel row, which the funnel's breakdown by source, medium and campaign reads.

Sales insights: tags and a short note given with feedback, with the handoff's touches, rule
and tier (the note is erased with the lead).

Revision ID: 0015
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

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
    op.create_table(
        "lead_touches",
        sa.Column("lead_key", sa.Text, primary_key=True),
        sa.Column("first_touch", JSONB),
        sa.Column("qualifying_touch", JSONB),
        sa.Column("last_touch", JSONB),
    )
    op.add_column("handoffs", sa.Column("touches", JSONB))
    op.add_column("funnel_events", sa.Column("touches", JSONB))
    op.create_table(
        "sales_insights",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("handoff_id", sa.Text, sa.ForeignKey("handoffs.handoff_id"), nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("rep_id", sa.Text),
        sa.Column("team", sa.Text),
        sa.Column("routing_rule", sa.Text),
        sa.Column("tier", sa.Text),
        sa.Column("touches", JSONB),
        sa.Column("tags", JSONB, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("sales_insights_at", "sales_insights", ["at"])
    op.create_index("sales_insights_handoff_id", "sales_insights", ["handoff_id"])


def downgrade() -> None:
    op.drop_table("sales_insights")
    op.drop_column("funnel_events", "touches")
    op.drop_column("handoffs", "touches")
    op.drop_table("lead_touches")
    op.drop_column("handoff_feedback", "currency")
    op.drop_column("handoff_feedback", "amount")
    for stage in ("customer", "opportunity"):
        op.drop_column("handoffs", f"{stage}_currency")
        op.drop_column("handoffs", f"{stage}_amount")
