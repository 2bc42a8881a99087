"""SQL the post-handoff policies need (issue 24): the lead's open handoff for a rise in tier
or a sales signal, suppressions, revisits and the existing owner's recent handoffs."""

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff.policies import RecentHandoff, Suppression
from services.handoff.repository import handoffs
from services.handoff.status import OPEN_STATUSES, RAISABLE_STATUSES, Handoff


async def lock_raisable_handoff(session: AsyncSession, lead_key: str) -> Handoff | None:
    """The lead's newest handoff that is not closed yet, locked, or None."""
    row = (
        await session.execute(
            select(handoffs)
            .where(
                handoffs.c.lead_key == lead_key,
                handoffs.c.status.in_(sorted(RAISABLE_STATUSES)),
            )
            .order_by(handoffs.c.created_at.desc(), handoffs.c.handoff_id)
            .limit(1)
            .with_for_update()
        )
    ).first()
    return Handoff.from_row(row._mapping) if row else None


async def latest_suppression(session: AsyncSession, lead_key: str) -> Suppression | None:
    """The lead's last rejection whose policy holds back routing (suppress, disqualify)."""
    row = (
        await session.execute(
            select(handoffs.c.recycle_policy, handoffs.c.suppressed_until, handoffs.c.fit_score)
            .where(
                handoffs.c.lead_key == lead_key,
                handoffs.c.recycle_policy.in_(["suppress", "disqualify"]),
            )
            .order_by(handoffs.c.closed_at.desc())
            .limit(1)
        )
    ).first()
    return Suppression(row.recycle_policy, row.suppressed_until, row.fit_score) if row else None


async def recent_handoffs(
    session: AsyncSession, lead_key: str, domain: str | None, since: datetime
) -> list[RecentHandoff]:
    """Handoffs with a rep of this lead or its email domain, open or assigned or closed since
    `since` (the existing-owner policy's candidates)."""
    account = func.lower(func.split_part(handoffs.c.email, "@", 2))
    who = handoffs.c.lead_key == lead_key
    if domain:
        who = who | (account == domain)
    rows = await session.execute(
        select(
            handoffs.c.lead_key,
            account.label("domain"),
            handoffs.c.rep_id,
            handoffs.c.assigned_at,
            handoffs.c.closed_at,
        )
        .where(
            who,
            handoffs.c.rep_id.is_not(None),
            handoffs.c.assigned_at.is_not(None),
            handoffs.c.closed_at.is_(None) | (handoffs.c.closed_at >= since),
        )
        .order_by(handoffs.c.assigned_at.desc())
        .limit(20)
    )
    return [RecentHandoff(*row) for row in rows]


async def has_newer_handoff(session: AsyncSession, lead_key: str, since: datetime) -> bool:
    """Whether the lead was handed off again after `since` (it qualified again)."""
    found = await session.scalar(
        select(handoffs.c.handoff_id)
        .where(handoffs.c.lead_key == lead_key, handoffs.c.created_at > since)
        .limit(1)
    )
    return found is not None


async def open_handoff(session: AsyncSession, lead_key: str) -> Handoff | None:
    """The lead's newest handoff a rep has (assigned, accepted or contacted), or None."""
    row = (
        await session.execute(
            select(handoffs)
            .where(handoffs.c.lead_key == lead_key, handoffs.c.status.in_(sorted(OPEN_STATUSES)))
            .order_by(handoffs.c.created_at.desc(), handoffs.c.handoff_id)
            .limit(1)
        )
    ).first()
    return Handoff.from_row(row._mapping) if row else None
