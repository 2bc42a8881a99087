"""Handoff: routing detail, SLA deadlines, feedback, rep availability, funnel events.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    for column in [
        sa.Column("tier", sa.Text),
        sa.Column("email", sa.Text),
        sa.Column("attributes", JSONB, nullable=False, server_default="{}"),
        sa.Column("explanation", JSONB, nullable=False, server_default="[]"),
        sa.Column("routing_rule", sa.Text),
        sa.Column("skipped", JSONB, nullable=False, server_default="{}"),
        sa.Column("queue", sa.Text),
        sa.Column("qualifying_activity_at", TS),
        sa.Column("assigned_at", TS),
        sa.Column("warn_at", TS),
        sa.Column("accept_by", TS),
        sa.Column("contact_by", TS),
        sa.Column("accepted_at", TS),
        sa.Column("contacted_at", TS),
        sa.Column("closed_at", TS),
        sa.Column("breached", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reassignments", sa.Integer, nullable=False, server_default="0"),
        sa.Column("previous_reps", JSONB, nullable=False, server_default="[]"),
        sa.Column("reason", sa.Text),
        sa.Column("converted_to", sa.Text),
    ]:
        op.add_column("handoffs", column)
    op.create_index("handoffs_status_created", "handoffs", ["status", "created_at"])
    op.add_column("reps", sa.Column("capacity", sa.Integer, nullable=False, server_default="25"))
    op.add_column(
        "reps", sa.Column("available", sa.Boolean, nullable=False, server_default=sa.true())
    )
    op.add_column("reps", sa.Column("working_hours", JSONB))
    op.create_table(
        "funnel_events",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("lead_key", sa.Text, nullable=False),
        sa.Column("transition", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("funnel_events_transition_at", "funnel_events", ["transition", "at"])


def downgrade() -> None:
    op.drop_table("funnel_events")
    for column in ("working_hours", "available", "capacity"):
        op.drop_column("reps", column)
    op.drop_index("handoffs_status_created", "handoffs")
    for column in (
        "converted_to",
        "reason",
        "previous_reps",
        "reassignments",
        "breached",
        "closed_at",
        "contacted_at",
        "accepted_at",
        "contact_by",
        "accept_by",
        "warn_at",
        "assigned_at",
        "qualifying_activity_at",
        "queue",
        "skipped",
        "routing_rule",
        "explanation",
        "attributes",
        "email",
        "tier",
    ):
        op.drop_column("handoffs", column)
