"""Scoring: a compact per-rule behaviour record per lead instead of every raw award.

Schema only. The leads' raw `hits` move, as they are, to `scoring_legacy_hits`, and
`leads.hits` goes: a lead's row no longer grows with its activity. Folding those awards
into the tallies needs the playbook's caps and half-life, so it is a command, not part of
the migration: `leadrouter scoring fold-legacy-hits` (docs/architecture.md), run once
after `leadrouter migrate` with the playbook the service runs with. A new installation has
no legacy hits and nothing to run.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "leads", sa.Column("behaviour", JSONB, nullable=False, server_default=sa.text("'{}'"))
    )
    op.create_table(
        "scoring_legacy_hits",
        sa.Column("lead_key", sa.Text, primary_key=True),
        sa.Column("hits", JSONB, nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        "insert into scoring_legacy_hits (lead_key, hits, last_activity_at) "
        "select lead_key, hits, last_activity_at from leads where hits <> '[]'::jsonb"
    )
    op.drop_column("leads", "hits")


def downgrade() -> None:
    op.add_column("leads", sa.Column("hits", JSONB, nullable=False, server_default="[]"))
    # Awards not folded yet go back; folded ones are gone (`leadrouter scoring replay`).
    op.execute(
        "update leads set hits = l.hits from scoring_legacy_hits l "
        "where leads.lead_key = l.lead_key"
    )
    op.drop_table("scoring_legacy_hits")
    op.drop_column("leads", "behaviour")
