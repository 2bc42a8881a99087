"""Timers: parked ones found through a partial index.

The runner counts parked timers per kind after every batch (the alert's gauge); without an
index that count read the whole table, so one million pending timers slowed firing to about
750 a second.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "timers_parked", "timers", ["kind"], postgresql_where=sa.text("parked_at IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("timers_parked", "timers")
