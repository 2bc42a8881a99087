"""Initial schema: consumer offsets, processed ids, outbox, leads, reps, handoffs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "consumer_offsets",
        sa.Column("consumer_group", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "processed_events",
        sa.Column("consumer_group", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("relay", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("headers", JSONB, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("outbox_relay_id", "outbox", ["relay", "id"])
    op.create_table(
        "leads",
        sa.Column("lead_key", sa.Text, primary_key=True),
        sa.Column("email", sa.Text),
        sa.Column("attributes", JSONB, nullable=False, server_default="{}"),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("events_count", sa.Integer, nullable=False),
        sa.Column("explanation", JSONB, nullable=False, server_default="[]"),
        sa.Column("last_activity_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("leads_email", "leads", ["email"])
    op.create_table(
        "reps",
        sa.Column("rep_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("email", sa.Text),
        sa.Column("team", sa.Text, nullable=False),
        sa.Column("weight", sa.Integer, nullable=False, server_default="1"),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("assigned_total", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "handoffs",
        sa.Column("handoff_id", sa.Text, primary_key=True),
        sa.Column("lead_key", sa.Text, nullable=False),
        sa.Column("rep_id", sa.Text, sa.ForeignKey("reps.rep_id")),
        sa.Column("team", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("routing_reason", sa.Text, nullable=False),
        sa.Column("lifecycle_event_id", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("handoffs_lead_key", "handoffs", ["lead_key"])
    op.create_index("handoffs_rep_status", "handoffs", ["rep_id", "status"])


def downgrade() -> None:
    for table in ("handoffs", "reps", "leads", "outbox", "processed_events", "consumer_offsets"):
        op.drop_table(table)
