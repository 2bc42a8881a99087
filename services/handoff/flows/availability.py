"""Reps in and out of office: a returning rep takes what waits in the team's queue."""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import repository
from services.handoff.flows.routing import RoutingFlow
from services.handoff.routing import levelled_ledger
from services.handoff.status import RepNotFound


class AvailabilityFlow(RoutingFlow):
    """Marking a rep in or out of office."""

    async def set_availability(
        self, session: AsyncSession, rep_id: str, available: bool, now: datetime
    ) -> tuple[int, int]:
        """Mark a rep in or out of office; returns their ledger and leads given from the queue.

        A returning rep starts at the team's rotation level (see `levelled_ledger`).
        """
        rep = next((r for r in await repository.lock_reps(session) if r.rep_id == rep_id), None)
        if rep is None:
            raise RepNotFound(f"no rep {rep_id!r}", pointer="/rep_id")
        ledger = rep.assigned_total
        if available and not rep.available:
            levels = await repository.get_rotation_levels(session)
            ledger = levelled_ledger(rep.assigned_total, rep.weight, levels.get(rep.team))
        await repository.set_availability(session, rep_id, available, ledger)
        drained = await self.drain_queue(session, rep.team, now) if available else 0
        return ledger, drained
