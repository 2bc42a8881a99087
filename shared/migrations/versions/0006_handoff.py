"""Handoff: SLA breaches per clock, sales feedback kept with its author, rotation levels,
merged lead keys for the funnel.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "handoffs", sa.Column("accept_breaches", sa.Integer, nullable=False, server_default="0")
    )
    op.add_column(
        "handoffs",
        sa.Column("contact_breached", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    # `breached` did not say which clock ran out; an escalated or reassigned handoff missed
    # an accept clock, any other breached one the contact clock.
    op.execute(
        "UPDATE handoffs SET accept_breaches = greatest(reassignments, 1) "
        "WHERE breached AND (reassignments > 0 OR status = 'escalated')"
    )
    op.execute(
        "UPDATE handoffs SET contact_breached = true "
        "WHERE breached AND reassignments = 0 AND status <> 'escalated'"
    )
    op.drop_column("handoffs", "breached")
    op.create_table(
        "handoff_feedback",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("handoff_id", sa.Text, sa.ForeignKey("handoffs.handoff_id"), nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("rep_id", sa.Text),
        sa.Column("api_key_name", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("converted_to", sa.Text),
        sa.Column("team", sa.Text, nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("handoff_feedback_handoff_id", "handoff_feedback", ["handoff_id"])
    op.create_index("handoff_feedback_action_at", "handoff_feedback", ["action", "at"])
    op.create_table(
        "rotation_levels",
        sa.Column("team", sa.Text, primary_key=True),
        sa.Column("level", sa.Float, nullable=False),
    )
    op.create_table(
        "lead_merges",
        sa.Column("merged_key", sa.Text, primary_key=True),
        sa.Column("lead_key", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lead_merges")
    op.drop_table("rotation_levels")
    op.drop_table("handoff_feedback")
    op.add_column(
        "handoffs", sa.Column("breached", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.execute("UPDATE handoffs SET breached = accept_breaches > 0 OR contact_breached")
    op.drop_column("handoffs", "contact_breached")
    op.drop_column("handoffs", "accept_breaches")
