"""Webhook deliveries: finished ones found by age, for the retention rule.

The webhook consumer's upkeep deletes deliveries finished (delivered or dead) longer ago
than LEADROUTER_WEBHOOK_DELIVERY_RETENTION_S; the partial index keeps that a range scan
over finished rows instead of a read of the whole table.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "webhook_deliveries_finished",
        "webhook_deliveries",
        ["finished_at"],
        postgresql_where=sa.text("status <> 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("webhook_deliveries_finished", "webhook_deliveries")
