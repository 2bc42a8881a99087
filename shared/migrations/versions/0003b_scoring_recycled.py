"""Scoring: when sales last recycled a lead (only later activity can requalify it).

Revision ID: 0003b
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003b"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("leads", sa.Column("recycled_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("leads", "recycled_at")
