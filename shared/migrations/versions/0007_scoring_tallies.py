"""Scoring: a compact per-rule behaviour record per lead instead of every raw award.

Each lead's raw `hits` are folded into the tallies with the configured playbook's caps and
half-life (LEADROUTER_PLAYBOOK, as the service that migrates runs with), then dropped: a
lead's row no longer grows with its activity.

Revision ID: 0007
Revises: 0006
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from services.scoring.core import Behaviour, Hit, add_hits
    from services.scoring.repository import encode_behaviour
    from shared.playbook import load_playbook
    from shared.settings import get_settings

    op.add_column(
        "leads", sa.Column("behaviour", JSONB, nullable=False, server_default=sa.text("'{}'"))
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("select lead_key, hits, last_activity_at from leads where hits <> '[]'::jsonb")
    ).all()
    if rows:
        playbook = load_playbook(get_settings().playbook)
        update = sa.text("update leads set behaviour = :doc where lead_key = :key").bindparams(
            sa.bindparam("doc", type_=JSONB)
        )
        for key, hits, last_activity_at in rows:
            raw = [
                Hit(h["rule"], h["points"], datetime.fromisoformat(h["at"]), h["event_id"])
                for h in hits
            ]
            clock = last_activity_at or max(h.at for h in raw)
            behaviour = add_hits(Behaviour(origins=frozenset({key})), raw, playbook, clock)
            bind.execute(update, {"doc": encode_behaviour(behaviour), "key": key})
    op.drop_column("leads", "hits")


def downgrade() -> None:
    # The raw awards are gone; scores recompute from a replay (`leadrouter scoring replay`).
    op.add_column("leads", sa.Column("hits", JSONB, nullable=False, server_default="[]"))
    op.drop_column("leads", "behaviour")
