"""The open-handoff and queue gauges, refreshed off the transactions after their commits."""

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.handoff import repository
from services.handoff.flows.base import FlowBase
from services.handoff.metrics import OPEN_HANDOFFS, QUEUE_SIZE

log = logging.getLogger(__name__)


class GaugeFlow(FlowBase):
    """Keep the gauges in step with the handoffs table."""

    _gauges_wake: asyncio.Event
    # The count walks every open handoff (~1.3 ms at 600 events/s, after every batch that
    # changed one): commits within this interval share one refresh.
    gauges_every_s: float = 0.5

    def committed(self) -> None:
        """After a commit: refresh the gauges if a transaction may have changed handoffs."""
        if self._gauges_stale:
            self._gauges_wake.set()

    async def keep_gauges(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Refresh the open-handoff and queue gauges after commits that changed handoffs, at
        most once per gauges_every_s (a commit meanwhile is counted by the next refresh).

        Off the transactions: the count over the handoffs was one more round trip in each,
        on the speed-to-lead path among them.
        """
        while True:
            await self._gauges_wake.wait()
            self._gauges_wake.clear()
            self._gauges_stale = False
            try:
                async with sessions() as session:
                    await self.observe(session)
            except Exception as exc:  # the database away: the next commit tries again
                log.warning("handoff gauges not refreshed: %s", exc)
            await asyncio.sleep(self.gauges_every_s)

    async def observe(self, session: AsyncSession) -> None:
        """Refresh the open-handoff and queue gauges from the table."""
        counts, waiting = await repository.count_open_and_waiting(session)
        for tier in self.playbook.taxonomy.tiers:
            OPEN_HANDOFFS.labels(tier.name).set(counts.get(tier.name, 0))
        for team in self.playbook.routing.teams:
            for queue in (
                team.fallback_queue or f"{team.name}-queue",
                team.manager_queue or f"{team.name}-manager",
            ):
                for tier in self.playbook.taxonomy.tiers:
                    QUEUE_SIZE.labels(queue, tier.name).set(waiting.get((queue, tier.name), 0))
