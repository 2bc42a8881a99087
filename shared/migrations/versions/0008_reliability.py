"""Reliability: parked outbox rows and timers (attempts, last error), prunable processed ids.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _parking_columns(table: str) -> None:
    op.add_column(table, sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
    op.add_column(table, sa.Column("last_error", sa.Text))
    op.add_column(table, sa.Column("parked_at", sa.DateTime(timezone=True)))


def upgrade() -> None:
    _parking_columns("outbox")
    _parking_columns("timers")
    op.create_index(
        "outbox_relay_pending",
        "outbox",
        ["relay", "id"],
        postgresql_where=sa.text("parked_at IS NULL"),
    )
    op.add_column("processed_events", sa.Column("topic", sa.Text))
    op.add_column("processed_events", sa.Column("partition", sa.Integer))
    op.add_column("processed_events", sa.Column("kafka_offset", sa.BigInteger))
    op.create_index("processed_events_processed_at", "processed_events", ["processed_at"])


def downgrade() -> None:
    op.drop_index("processed_events_processed_at", "processed_events")
    for column in ("kafka_offset", "partition", "topic"):
        op.drop_column("processed_events", column)
    op.drop_index("outbox_relay_pending", "outbox")
    for table in ("timers", "outbox"):
        for column in ("parked_at", "last_error", "attempts"):
            op.drop_column(table, column)
