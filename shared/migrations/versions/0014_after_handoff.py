"""Handoffs after the handoff (issue 24): the manager queue's deadline and how a lead was
recycled.

`queue_due_at`: when an escalated lead's wait in the manager's queue breaches;
`recycle_policy`: the policy that closed a handoff by recycling its lead (with `reason`),
counted in the funnel by reason and by policy.

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


def downgrade() -> None:
    op.drop_column("handoffs", "recycle_policy")
    op.drop_column("handoffs", "queue_due_at")
