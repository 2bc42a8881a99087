"""The goals flow: evaluate every goal of the playbook, publish status changes, keep gauges.

A durable timer (`handoff.goals_check`, one row) runs the check every `interval_s`; each
goal is evaluated in its own savepoint, so a goal that fails is counted and logged and the
others go on. The status published last per goal and period is a row in `goal_status`: a
change is written there and to the outbox in the same transaction, so it is published once.
"""

import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.handoff import goals_repository
from services.handoff.goals import GoalProgress, GoalStatus, gap_stage, period_of, progress
from services.handoff.metrics import GOAL_CHECK_FAILURES, GOAL_FIGURES, GOAL_STATUS
from shared import outbox, timers
from shared.events import CloudEvent, derived_event_id
from shared.goal_events import GOAL_STATUS_CHANGED, GoalStatusData
from shared.playbook import Playbook
from shared.playbook.goals import Goal
from shared.timers import Timer

log = logging.getLogger(__name__)

GOALS_CHECK = "handoff.goals_check"
CHECK_KEY = "all"
RELAY = "handoff"


async def evaluate(session: AsyncSession, goals: list[Goal], now: datetime) -> list[GoalProgress]:
    """Every goal's progress in its period holding `now`."""
    out = []
    for goal in goals:
        period = period_of(goal.period, now, goal.timezone)
        out.append(progress(goal, await goals_repository.tally(session, goal, period, now), now))
    return out


async def evaluate_period(
    session: AsyncSession, goals: list[Goal], now: datetime, at: datetime
) -> list[GoalProgress]:
    """Every goal's progress in the period holding `at`, as it stood at `now` (the backtest
    and the report ask about past periods: `now` past their end says met or missed)."""
    out = []
    for goal in goals:
        period = period_of(goal.period, at, goal.timezone)
        tally = await goals_repository.tally(session, goal, period, now)
        out.append(progress(goal, tally, now, period))
    return out


def observe(progresses: list[GoalProgress]) -> None:
    """Set the goal gauges from fresh progress."""
    for p in progresses:
        figures = {
            "target": p.target,
            "actual": p.actual,
            "expected": p.expected,
            "projection": p.projection,
        }
        for figure, value in figures.items():
            GOAL_FIGURES.labels(p.goal_id, p.metric, p.owner, figure).set(
                float("nan") if value is None else value
            )
        for status in GoalStatus:
            GOAL_STATUS.labels(p.goal_id, p.owner, str(status)).set(int(status is p.status))


class GoalsJob:
    """Checks the playbook's goals on a durable timer and publishes their status changes."""

    def __init__(self, playbook: Playbook, topic: str, interval_s: float = 60.0) -> None:
        self.goals = list(playbook.goals)
        self.topic = topic
        self.interval_s = interval_s

    def timer_handlers(self) -> dict[str, timers.TimerHandler]:
        # Always handled: a check set while the playbook had goals fires once and stops.
        return {GOALS_CHECK: self.on_check}

    async def start(self, session: AsyncSession, now: datetime) -> None:
        """Set the check's timer unless it is set (it survives restarts)."""
        if self.goals and await timers.find(session, GOALS_CHECK, CHECK_KEY) is None:
            await timers.schedule(session, GOALS_CHECK, CHECK_KEY, now)

    async def on_check(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Evaluate every goal, publish changes, set the next check."""
        if not self.goals:
            return
        await timers.schedule(
            session, GOALS_CHECK, CHECK_KEY, now + timedelta(seconds=self.interval_s)
        )
        await self.check(session, now)

    async def check(self, session: AsyncSession, now: datetime) -> list[GoalProgress]:
        """Evaluate every goal, each in its own savepoint; returns those evaluated."""
        done = []
        for goal in self.goals:
            try:
                async with session.begin_nested():
                    done.append(await self._check_one(session, goal, now))
            except Exception:
                GOAL_CHECK_FAILURES.labels(goal.id).inc()
                log.exception("goal %s not evaluated", goal.id)
        observe(done)
        return done

    async def _check_one(self, session: AsyncSession, goal: Goal, now: datetime) -> GoalProgress:
        period = period_of(goal.period, now, goal.timezone)
        p = progress(goal, await goals_repository.tally(session, goal, period, now), now)
        before = await goals_repository.lock_status(session, goal.id, period.start)
        if before == str(p.status):
            return p
        await goals_repository.save_status(
            session, goal.id, period.start, p.status, p.actual, goal.target, now
        )
        data = GoalStatusData(
            goal_id=p.goal_id,
            title=p.title,
            metric=p.metric,
            owner=p.owner,  # type: ignore[arg-type]
            period=p.period,  # type: ignore[arg-type]
            team=p.team,
            tier=p.tier,
            period_start=p.period_start,
            period_end=p.period_end,
            target=p.target,
            actual=p.actual,
            expected=p.expected,
            projection=p.projection,
            status=str(p.status),  # type: ignore[arg-type]
            previous_status=before,  # type: ignore[arg-type]
        )
        await outbox.add_event(
            session,
            RELAY,
            self.topic,
            CloudEvent(
                # one per goal and check: the check's transaction writes it once or not at all
                id=derived_event_id("goal", goal.id, period.start.isoformat(), now.isoformat()),
                source="leadrouter/handoff",
                type=GOAL_STATUS_CHANGED,
                time=now,
                subject=f"goal:{goal.id}",
                data=data.model_dump(mode="json"),
            ),
        )
        log.info("goal %s is now %s (was %s)", goal.id, p.status, before)
        return p


__all__ = ["GOALS_CHECK", "GoalsJob", "evaluate", "evaluate_period", "gap_stage", "observe"]
