"""SQL for reps (with their fairness ledger), handoffs, feedback and the funnel."""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import false as sa_false
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff.routing import EVERY_REP, RepLoad, RepScope, levelled_ledger
from services.handoff.status import (
    OPEN_STATUSES,
    WAITING_STATUSES,
    Handoff,
    HandoffStatus,
)
from shared.db import metadata
from shared.playbook import Playbook
from shared.playbook.handoff import WorkingHours

TS = DateTime(timezone=True)
MONEY = Numeric(18, 2)
CURRENCY = String(3)  # ISO 4217

reps = Table(
    "reps",
    metadata,
    Column("rep_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("email", Text),
    Column("team", Text, nullable=False),
    Column("weight", Integer, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("assigned_total", BigInteger, nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("available", Boolean, nullable=False),
    Column("working_hours", JSONB),
    Column("updated_at", TS, nullable=False, server_default=func.now()),
)

handoffs = Table(
    "handoffs",
    metadata,
    Column("handoff_id", Text, primary_key=True),
    Column("lead_key", Text, nullable=False),
    Column("rep_id", Text, ForeignKey("reps.rep_id")),
    Column("team", Text),
    Column("queue", Text),
    Column("status", Text, nullable=False),
    Column("tier", Text),
    Column("score", Integer, nullable=False),
    Column("email", Text),
    Column("attributes", JSONB, nullable=False),
    Column("explanation", JSONB, nullable=False),
    Column("routing_rule", Text),
    Column("routing_reason", Text, nullable=False),
    Column("skipped", JSONB, nullable=False),
    Column("lifecycle_event_id", Text, nullable=False, unique=True),
    Column("qualifying_activity_at", TS),
    Column("assigned_at", TS),
    Column("warn_at", TS),
    Column("accept_by", TS),
    Column("contact_by", TS),
    Column("accepted_at", TS),
    Column("contacted_at", TS),
    Column("closed_at", TS),
    Column("accept_breaches", Integer, nullable=False, server_default="0"),
    Column("contact_breached", Boolean, nullable=False, server_default=sa_false()),
    Column("reassignments", Integer, nullable=False),
    Column("previous_reps", JSONB, nullable=False),
    Column("reason", Text),
    Column("converted_to", Text),
    Column("created_at", TS, nullable=False, server_default=func.now()),
    Column("opportunity_amount", MONEY),
    Column("opportunity_currency", CURRENCY),
    Column("customer_amount", MONEY),
    Column("customer_currency", CURRENCY),
    Column("touches", JSONB),  # the lead's first, qualifying and last touch when it was routed
    Column("updated_at", TS, nullable=False, server_default=func.now()),
    Column("queue_due_at", TS),  # escalated: when the manager queue's wait breaches
    Column("recycle_policy", Text),  # closed by recycling: which policy
    Column("revisit_at", TS),  # a reject policy routes the lead again then
    Column("suppressed_until", TS),  # a reject policy holds back routing until then
    Column("fit_score", Float),  # the lead's fit at the handoff
)
Index("handoffs_lead_key", handoffs.c.lead_key)
# The existing-owner policy finds an account's handoffs by email domain.
Index("handoffs_email_domain", func.lower(func.split_part(handoffs.c.email, "@", 2)))
Index("handoffs_rep_status", handoffs.c.rep_id, handoffs.c.status)
Index("handoffs_status_created", handoffs.c.status, handoffs.c.created_at)

funnel_events = Table(
    "funnel_events",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("lead_key", Text, nullable=False),
    Column("transition", Text, nullable=False),
    Column("at", TS, nullable=False),
    Column("touches", JSONB),  # the lead's touches then: the breakdown by source reads them
)
Index("funnel_events_transition_at", funnel_events.c.transition, funnel_events.c.at)

# Lead keys scoring merged into another lead: the funnel counts the person once.
lead_merges = Table(
    "lead_merges",
    metadata,
    Column("merged_key", Text, primary_key=True),
    Column("lead_key", Text, nullable=False),
)

# Per team, the highest handoffs-per-weight at which fair rotation picked a rep.
rotation_levels = Table(
    "rotation_levels",
    metadata,
    Column("team", Text, primary_key=True),
    Column("level", Float, nullable=False),
)

handoff_feedback = Table(
    "handoff_feedback",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("handoff_id", Text, ForeignKey("handoffs.handoff_id"), nullable=False),
    Column("action", Text, nullable=False),
    Column("rep_id", Text),  # who gave it, as the sales tool says
    Column("api_key_name", Text),  # who called: the credential's name, once auth sets it
    Column("reason", Text),
    Column("converted_to", Text),
    Column("amount", MONEY),  # convert to opportunity or customer: what the deal is worth
    Column("currency", CURRENCY),
    Column("team", Text, nullable=False),
    Column("cause", Text, nullable=False),
    Column("at", TS, nullable=False),
)
Index("handoff_feedback_handoff_id", handoff_feedback.c.handoff_id)
Index("handoff_feedback_action_at", handoff_feedback.c.action, handoff_feedback.c.at)

OPEN = sorted(OPEN_STATUSES)


async def sync_roster(session: AsyncSession, playbook: Playbook) -> None:
    """Make the reps table match the playbook; ledgers and availability are kept.

    A rep new to the table starts at their team's rotation level, not at 0.
    """
    # Every rep row locked first, in rep_id order as routing locks them (lock_reps), and new
    # rows inserted in that order: an instance starting while another routes (or starts) then
    # waits for it instead of deadlocking with it.
    locked = select(reps.c.rep_id).order_by(reps.c.rep_id).with_for_update()
    known = set((await session.scalars(locked)).all())
    levels = await get_rotation_levels(session)
    values = [
        {
            "rep_id": r.id,
            "name": r.name,
            "email": r.email,
            "team": t.name,
            "weight": r.weight,
            "active": True,
            "assigned_total": 0
            if r.id in known
            else levelled_ledger(0, r.weight, levels.get(t.name)),
            "capacity": r.capacity,
            "available": True,
            "working_hours": r.working_hours.model_dump(mode="json") if r.working_hours else None,
        }
        for t in playbook.routing.teams
        for r in t.reps
    ]
    values.sort(key=lambda v: str(v["rep_id"]))
    stmt = pg_insert(reps).values(values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["rep_id"],
            set_={
                c: stmt.excluded[c]
                for c in ("name", "email", "team", "weight", "active", "capacity", "working_hours")
            },
        )
    )
    await session.execute(
        update(reps).where(reps.c.rep_id.not_in([v["rep_id"] for v in values])).values(active=False)
    )


def _open_count() -> Any:
    return (
        select(func.count())
        .where(handoffs.c.rep_id == reps.c.rep_id, handoffs.c.status.in_(OPEN))
        .scalar_subquery()
    )


def _rep_loads(rows: Iterable[Any]) -> list[RepLoad]:
    return [
        RepLoad(
            r.rep_id,
            r.name,
            r.team,
            r.weight,
            r.assigned_total,
            r.active,
            r.open_handoffs,
            r.capacity,
            r.available,
            WorkingHours.model_validate(r.working_hours) if r.working_hours else None,
        )
        for r in rows
    ]


async def lock_reps(session: AsyncSession, scope: RepScope = EVERY_REP) -> list[RepLoad]:
    """The reps in `scope` (every rep unless told) with their open load, locked in rep_id
    order, so concurrent transactions read one ledger and never deadlock on it."""
    reps_locked, _ = await lock_reps_and_clock(session, scope)
    return reps_locked


async def lock_reps_and_clock(
    session: AsyncSession, scope: RepScope = EVERY_REP
) -> tuple[list[RepLoad], datetime]:
    """`lock_reps` and the transaction's clock (Postgres' now()) in one round trip."""
    query = select(reps, _open_count().label("open_handoffs"), func.now().label("db_now"))
    if not scope.everyone:
        query = query.where(
            or_(reps.c.team.in_(sorted(scope.teams)), reps.c.rep_id.in_(sorted(scope.rep_ids)))
        )
    rows = (await session.execute(query.order_by(reps.c.rep_id).with_for_update(of=reps))).all()
    if not rows:  # no reps: the clock alone
        return [], (await session.execute(select(func.now()))).scalar_one()
    return _rep_loads(rows), rows[0].db_now


async def list_reps(session: AsyncSession) -> list[RepLoad]:
    """Every rep with their open handoffs."""
    rows = await session.execute(
        select(reps, _open_count().label("open_handoffs")).order_by(reps.c.rep_id)
    )
    return _rep_loads(rows)


async def record_assignment(
    session: AsyncSession, rep_id: str, team: str | None = None, level: float | None = None
) -> None:
    """Advance the rep's fairness ledger by one handoff and, given a `level`, raise the
    team's rotation level to it (one round trip: it is on the speed-to-lead path)."""
    ledger = (
        update(reps)
        .where(reps.c.rep_id == rep_id)
        .values(assigned_total=reps.c.assigned_total + 1, updated_at=func.now())
    )
    if level is None:
        await session.execute(ledger)
        return
    stmt = pg_insert(rotation_levels).values(team=team, level=level)
    await session.execute(
        stmt.add_cte(ledger.cte("ledger")).on_conflict_do_update(
            index_elements=["team"],
            set_={"level": func.greatest(rotation_levels.c.level, stmt.excluded.level)},
        )
    )


async def get_rotation_levels(session: AsyncSession) -> dict[str, float]:
    """Each team's rotation level (teams whose rotation never picked anyone are absent)."""
    rows = await session.execute(select(rotation_levels.c.team, rotation_levels.c.level))
    return {team: level for team, level in rows.all()}


async def set_availability(
    session: AsyncSession, rep_id: str, available: bool, ledger: int
) -> None:
    """Mark a rep in or out of office, with the ledger they return on."""
    await session.execute(
        update(reps)
        .where(reps.c.rep_id == rep_id)
        .values(available=available, assigned_total=ledger, updated_at=func.now())
    )


async def insert_handoff(session: AsyncSession, **values: Any) -> Handoff | None:
    """Insert a handoff and return it as stored (this transaction holds its row lock); None
    when one for the same lifecycle event exists already."""
    row = (
        await session.execute(
            pg_insert(handoffs)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["lifecycle_event_id"])
            .returning(*handoffs.c)
        )
    ).first()
    return Handoff.from_row(row._mapping) if row else None


async def lock_handoff(session: AsyncSession, handoff_id: str) -> Handoff | None:
    """One handoff, locked until the transaction ends, or None."""
    row = (
        await session.execute(
            select(handoffs).where(handoffs.c.handoff_id == handoff_id).with_for_update()
        )
    ).first()
    return Handoff.from_row(row._mapping) if row else None


async def lock_free_handoffs(session: AsyncSession, handoff_ids: Sequence[str]) -> set[str]:
    """Lock the handoffs no other transaction holds, without waiting; returns their ids and
    the ids no handoff has (nothing to wait for)."""
    return set(await session.scalars(LOCK_FREE_HANDOFFS, {"ids": sorted(set(handoff_ids))}))


# `union all` reads the locking CTE to its end, so every free row is locked, not only those a
# lazy `in` happened to need.
LOCK_FREE_HANDOFFS = text(
    "with locked as materialized (select handoff_id from handoffs"
    "  where handoff_id = any(cast(:ids as text[])) order by handoff_id for update skip locked)"
    " select handoff_id from locked"
    " union all select k from unnest(cast(:ids as text[])) as k"
    " where not exists (select 1 from handoffs h where h.handoff_id = k)"
)


async def lock_queued(session: AsyncSession, team: str) -> list[Handoff]:
    """A team's leads waiting in its fallback queue, oldest first, locked (others skip them)."""
    rows = await session.execute(
        select(handoffs)
        .where(handoffs.c.team == team, handoffs.c.status == HandoffStatus.QUEUED)
        .order_by(handoffs.c.created_at, handoffs.c.handoff_id)
        .with_for_update(skip_locked=True)
    )
    return [Handoff.from_row(r._mapping) for r in rows]


async def update_handoff(session: AsyncSession, handoff_id: str, **values: Any) -> None:
    """Change a handoff."""
    await session.execute(
        update(handoffs)
        .where(handoffs.c.handoff_id == handoff_id)
        .values(**values, updated_at=func.now())
    )


async def list_handoffs(
    session: AsyncSession,
    status: str | None,
    rep_id: str | None,
    team: str | None,
    tier: str | None,
    limit: int,
) -> list[Handoff]:
    """Newest handoffs first, optionally filtered."""
    query = (
        select(handoffs).order_by(handoffs.c.created_at.desc(), handoffs.c.handoff_id).limit(limit)
    )
    for column, value in (
        (handoffs.c.status, status),
        (handoffs.c.rep_id, rep_id),
        (handoffs.c.team, team),
        (handoffs.c.tier, tier),
    ):
        if value:
            query = query.where(column == value)
    return [Handoff.from_row(r._mapping) for r in await session.execute(query)]


async def get_handoff(session: AsyncSession, handoff_id: str) -> Handoff | None:
    """One handoff, or None."""
    row = (
        await session.execute(select(handoffs).where(handoffs.c.handoff_id == handoff_id))
    ).first()
    return Handoff.from_row(row._mapping) if row else None


async def record_feedback(session: AsyncSession, **values: Any) -> None:
    """Keep one piece of sales feedback: what, on which handoff, by whom, when."""
    await session.execute(pg_insert(handoff_feedback).values(**values))


async def count_open_and_waiting(
    session: AsyncSession,
) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Open handoffs per tier, and leads waiting in each queue per (queue, tier)."""
    is_open = handoffs.c.status.in_(OPEN)
    rows = await session.execute(
        select(is_open, handoffs.c.queue, handoffs.c.tier, func.count())
        .where(handoffs.c.status.in_(OPEN + sorted(WAITING_STATUSES)))
        .group_by(is_open, handoffs.c.queue, handoffs.c.tier)
    )
    open_by_tier: dict[str, int] = {}
    waiting: dict[tuple[str, str], int] = {}
    for opened, queue, tier, count in rows.all():
        if opened:
            open_by_tier[tier] = open_by_tier.get(tier, 0) + count
        else:
            waiting[(queue, tier)] = count
    return open_by_tier, waiting


async def record_funnel_event(
    session: AsyncSession,
    event_id: str,
    lead_key: str,
    transition: str,
    at: datetime,
    touches: str | None = None,
) -> None:
    """Remember a lifecycle transition for the funnel (once per event id)."""
    await record_funnel_events(session, [(event_id, lead_key, transition, at, touches)])


# One fixed statement for a batch's transitions (a statement per event was ~80% of the
# handoff consumer's CPU with 1,000 lifecycle events/s).
RECORD_FUNNEL_EVENTS = text(
    "insert into funnel_events (event_id, lead_key, transition, at, touches)"
    " select i, k, t, a, cast(x as jsonb) from unnest(cast(:ids as text[]),"
    " cast(:keys as text[]), cast(:transitions as text[]), cast(:ats as timestamptz[]),"
    " cast(:touches as text[])) as r(i, k, t, a, x)"
    " on conflict do nothing"
)

# A funnel row: event id, lead key, transition, at, and the lead's touches (JSON text) or None.
FunnelRow = tuple[str, str, str, datetime, str | None]


async def record_funnel_events(session: AsyncSession, rows: Sequence[FunnelRow]) -> None:
    """Remember lifecycle transitions (event id, lead key, transition, at, touches)."""
    if rows:
        ids, keys, transitions, ats, touches = (list(column) for column in zip(*rows, strict=True))
        await session.execute(
            RECORD_FUNNEL_EVENTS,
            {"ids": ids, "keys": keys, "transitions": transitions, "ats": ats, "touches": touches},
        )


async def record_merges(session: AsyncSession, lead_key: str, merged_keys: list[str]) -> None:
    """Remember that these keys now belong to `lead_key` (and whatever merged into them)."""
    if not merged_keys:
        return
    await session.execute(
        update(lead_merges).where(lead_merges.c.lead_key.in_(merged_keys)).values(lead_key=lead_key)
    )
    stmt = pg_insert(lead_merges).values(
        [{"merged_key": k, "lead_key": lead_key} for k in merged_keys if k != lead_key]
    )
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["merged_key"], set_={"lead_key": lead_key})
    )


# -- sales insights (services/handoff/insights.py) -------------------------------------------

sales_insights = Table(
    "sales_insights",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("handoff_id", Text, ForeignKey("handoffs.handoff_id"), nullable=False),
    Column("action", Text, nullable=False),
    Column("rep_id", Text),
    Column("team", Text),
    Column("routing_rule", Text),
    Column("tier", Text),
    Column("touches", JSONB),  # the handoff's, so the insight is read by campaign
    Column("tags", JSONB, nullable=False),
    Column("note", Text),  # erased with the lead
    Column("at", TS, nullable=False),
)
Index("sales_insights_at", sales_insights.c.at)
Index("sales_insights_handoff_id", sales_insights.c.handoff_id)


async def record_insight(session: AsyncSession, **values: Any) -> None:
    """Keep what sales heard about a handoff."""
    await session.execute(pg_insert(sales_insights).values(**values))


async def insight_rows(session: AsyncSession, since: datetime, until: datetime) -> list[Any]:
    """The insights given between two times."""
    rows = await session.execute(
        select(
            sales_insights.c.touches,
            sales_insights.c.routing_rule,
            sales_insights.c.tier,
            sales_insights.c.tags,
            sales_insights.c.note,
            sales_insights.c.at,
        ).where(sales_insights.c.at >= since, sales_insights.c.at < until)
    )
    return list(rows.all())
