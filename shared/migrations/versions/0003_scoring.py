"""Scoring: fit and behaviour scores, tier, activity hits, and identity aliases.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("leads", sa.Column("fit_score", sa.Float, nullable=False, server_default="0"))
    op.add_column(
        "leads", sa.Column("behaviour_score", sa.Float, nullable=False, server_default="0")
    )
    op.add_column("leads", sa.Column("tier", sa.Text))
    op.add_column("leads", sa.Column("hits", JSONB, nullable=False, server_default="[]"))
    op.add_column("leads", sa.Column("evaluated_at", sa.DateTime(timezone=True)))
    op.create_table(
        "lead_aliases",
        sa.Column("alias", sa.Text, primary_key=True),
        sa.Column("lead_key", sa.Text, nullable=False),
    )
    op.create_index("lead_aliases_lead_key", "lead_aliases", ["lead_key"])
    op.execute("INSERT INTO lead_aliases (alias, lead_key) SELECT lead_key, lead_key FROM leads")


def downgrade() -> None:
    op.drop_table("lead_aliases")
    for column in ("evaluated_at", "hits", "tier", "behaviour_score", "fit_score"):
        op.drop_column("leads", column)
