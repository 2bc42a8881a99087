"""Handoffs after the handoff (issue 24): the manager queue's deadline and how a lead was
recycled.

`queue_due_at`: when an escalated lead's wait in the manager's queue breaches;
`recycle_policy`: the policy that closed a handoff by recycling its lead (with `reason`),
counted in the funnel by reason and by policy; `revisit_at` / `suppressed_until`: what a
reject reason's policy set (route again then, or not before then unless the fit changed);
`fit_score`: the lead's fit when it was handed off (a suppression ends when it changes);
an index on the email's domain for the existing-owner policy (an account's recent handoffs).

Revision ID: 0014
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("handoffs", sa.Column("queue_due_at", sa.DateTime(timezone=True)))
    op.add_column("handoffs", sa.Column("recycle_policy", sa.Text()))
    op.add_column("handoffs", sa.Column("revisit_at", sa.DateTime(timezone=True)))
    op.add_column("handoffs", sa.Column("suppressed_until", sa.DateTime(timezone=True)))
    op.add_column("handoffs", sa.Column("fit_score", sa.Float()))
    op.create_index(
        "handoffs_email_domain", "handoffs", [sa.text("lower(split_part(email, '@', 2))")]
    )


def downgrade() -> None:
    op.drop_index("handoffs_email_domain", "handoffs")
    op.drop_column("handoffs", "fit_score")
    op.drop_column("handoffs", "suppressed_until")
    op.drop_column("handoffs", "revisit_at")
    op.drop_column("handoffs", "recycle_policy")
    op.drop_column("handoffs", "queue_due_at")
