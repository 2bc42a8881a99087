"""`leadrouter scoring fold-legacy-hits`: fold the raw awards stored before the tallies.

Migration 0007 is schema only: it moves each lead's raw `hits` to `scoring_legacy_hits` as
they were. This command folds them into the leads' behaviour tallies with the caps and
half-life of the playbook it is given (LEADROUTER_PLAYBOOK, the one the scoring service runs
with), in batches of one transaction each, and deletes each folded row: it can be stopped
and run again, and it reports when nothing is left. A lead merged since then gets the awards
through the alias its old key became; a lead erased since then has them dropped.
"""

import asyncio
import sys
from dataclasses import replace
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring import repository
from services.scoring.core import Behaviour, Hit, LeadState, add_hits, merge_behaviour
from shared.db import make_engine, make_sessionmaker
from shared.migrate import upgrade_async
from shared.playbook import Playbook, load_playbook
from shared.settings import ScoringSettings

BATCH = 500  # leads per transaction


def folded(
    state: LeadState,
    legacy_key: str,
    hits: list[Hit],
    playbook: Playbook,
    last_activity_at: datetime | None,
) -> LeadState:
    """The lead with these raw awards counted in its behaviour record."""
    clock = last_activity_at or max(h.at for h in hits)
    record = add_hits(Behaviour(origins=frozenset({legacy_key})), hits, playbook, clock)
    current = state.behaviour
    if not current.tallies and not current.recent:
        return replace(state, behaviour=replace(record, origins=record.origins | current.origins))
    return replace(state, behaviour=merge_behaviour(current, record, playbook))


def _hits(doc: list[dict[str, Any]]) -> list[Hit]:
    return [
        Hit(h["rule"], h["points"], datetime.fromisoformat(h["at"]), h["event_id"]) for h in doc
    ]


async def fold_batch(session: AsyncSession, playbook: Playbook, limit: int = BATCH) -> int:
    """Fold up to `limit` waiting rows in the session's transaction; how many were taken."""
    rows = await repository.legacy_hits_batch(session, limit)
    if not rows:
        return 0
    keys = [r.lead_key for r in rows]
    current = await repository.resolve_aliases(session, keys)
    states = await repository.lock_leads(session, {current.get(k, k) for k in keys})
    changed: dict[str, LeadState] = {}
    for row in rows:
        key = current.get(row.lead_key, row.lead_key)
        state = changed.get(key) or states.get(key)
        hits = _hits(row.hits)
        if state is not None and hits:
            changed[key] = folded(state, row.lead_key, hits, playbook, row.last_activity_at)
    await repository.save_leads(session, changed.values())
    await repository.delete_legacy_hits(session, keys)
    return len(rows)


async def fold_legacy_hits(settings: ScoringSettings, out: TextIO = sys.stderr) -> int:
    """Fold every waiting row; returns how many leads' awards were folded."""
    playbook = load_playbook(settings.playbook)
    await upgrade_async(settings.database_url)
    engine = make_engine(settings.database_url, pool_size=1)
    total = 0
    try:
        sessions = make_sessionmaker(engine)
        while True:
            async with sessions() as session, session.begin():
                taken = await fold_batch(session, playbook)
            if not taken:
                break
            total += taken
            print(f"[fold-legacy-hits] {total} leads folded", file=out, flush=True)
    finally:
        await engine.dispose()
    print(f"[fold-legacy-hits] done: {total} leads folded, none left", file=out, flush=True)
    return total


def main(settings: ScoringSettings) -> int:
    """Run the command; the exit status."""
    asyncio.run(fold_legacy_hits(settings))
    return 0
