"""Scoring: when sales last recycled a lead (only later activity can requalify it).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("leads", sa.Column("recycled_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("leads", "recycled_at")
