"""The playbook sections the handoff service applies: routing (teams, reps, rules) and SLAs."""

from datetime import time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from shared.playbook.base import Section
from shared.playbook.scoring_rules import Condition

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class WorkingHours(Section):
    """When a rep takes leads, in their own time zone."""

    timezone: str = "UTC"
    days: list[str] = Field(default_factory=lambda: list(WEEKDAYS[:5]))
    start: time = time(0, 0)
    end: time = time(23, 59, 59)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        unknown = [d for d in value if d not in WEEKDAYS]
        if unknown:
            raise ValueError(f"unknown days {unknown}; use {list(WEEKDAYS)}")
        return value


class Rep(Section):
    """A sales rep who can receive handoffs."""

    id: str
    name: str
    email: str | None = None
    weight: int = Field(1, ge=1, description="Share of leads relative to teammates")
    capacity: int = Field(25, ge=1, description="Most open handoffs at once")
    working_hours: WorkingHours | None = Field(None, description="None: any time")


class Team(Section):
    name: str
    reps: list[Rep] = Field(min_length=1)
    manager_queue: str | None = Field(
        None, description="Where escalations go; default <team>-manager"
    )
    fallback_queue: str | None = Field(None, description="Where leads wait when no rep is eligible")
    managers: list[str] = Field(
        default_factory=list,
        description="Ids of the people who may give feedback on any of the team's handoffs",
    )


class RoutingRule(Section):
    """Leads whose attributes (and tier) all match go to `team`; the first matching rule wins."""

    name: str
    team: str
    when: dict[str, Condition] = Field(default_factory=dict)


class ExistingOwnerPolicy(Section):
    """A lead that comes back, or a new person from an account with a recent handoff, goes
    to the rep who had it (unless they are out or at capacity)."""

    days: float | None = Field(
        None, gt=0, description="How recent a handoff counts (None: the policy is off)"
    )
    ignore_domains: list[str] = Field(
        default_factory=lambda: ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "gmx.de"],
        description="Email domains that are not accounts (free mail)",
    )


class Routing(Section):
    teams: list[Team] = Field(min_length=1)
    rules: list[RoutingRule] = Field(default_factory=list)
    accounts: dict[str, str] = Field(
        default_factory=dict, description="Email domain -> owning rep id (account ownership first)"
    )
    existing_owner: ExistingOwnerPolicy = Field(
        default_factory=ExistingOwnerPolicy,
        description="Give a returning lead or account to the rep who had it recently",
    )

    @model_validator(mode="after")
    def _known_names(self) -> "Routing":
        teams = {t.name for t in self.teams}
        reps = {r.id for t in self.teams for r in t.reps}
        bad_teams = sorted({r.team for r in self.rules} - teams)
        if bad_teams:
            raise ValueError(f"rules name unknown teams {bad_teams}")
        bad_owners = sorted(set(self.accounts.values()) - reps)
        if bad_owners:
            raise ValueError(f"accounts name unknown reps {bad_owners}")
        return self


class SlaPolicy(Section):
    """How fast a lead of one tier must be accepted and first contacted."""

    accept_minutes: float = Field(gt=0)
    contact_minutes: float = Field(gt=0)


class ManagerQueueSla(Section):
    """How long an escalated lead may wait in a manager's queue, and what happens then."""

    tiers: dict[str, float] = Field(
        default_factory=dict, description="Minutes a lead of each tier may wait (none: no clock)"
    )
    warning_at: float = Field(0.6, gt=0, lt=1, description="Warn at this share of the wait")
    final: Literal["recycle", "keep"] = Field(
        "recycle",
        description="At the breach: recycle the lead to marketing (with `reason`), or keep it "
        "in the queue (the breach event only)",
    )
    reason: str = Field("unworked", description="The recycle reason the final policy gives")

    @field_validator("tiers")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(t for t, minutes in value.items() if minutes <= 0)
        if bad:
            raise ValueError(f"manager queue minutes must be above 0 (tiers {bad})")
        return value


class RejectPolicy(Section):
    """What a reject reason does to the lead (docs/handoff.md, "Reject reasons lead somewhere")."""

    policy: Literal["recycle", "revisit", "suppress", "merge", "disqualify"] = Field(
        "recycle",
        description="recycle: back to marketing now; revisit: back to nurture and routed again "
        "after `days` (sooner if it qualifies again); suppress: not routed for `days` unless "
        "its fit changes; merge: a duplicate, closed without recycling; disqualify: closed and "
        "never routed again",
    )
    days: float | None = Field(None, gt=0, description="revisit and suppress: how many days")

    @model_validator(mode="after")
    def _days_when_needed(self) -> "RejectPolicy":
        if self.policy in {"revisit", "suppress"} and self.days is None:
            raise ValueError(f"policy {self.policy} needs days")
        return self


class StalePolicy(Section):
    """How long an accepted or contacted lead may go without feedback."""

    remind_days: float = Field(gt=0, description="Then a stale_reminder event")
    recycle_days: float = Field(gt=0, description="Then the lead is recycled (reason stale)")

    @model_validator(mode="after")
    def _remind_first(self) -> "StalePolicy":
        if self.recycle_days <= self.remind_days:
            raise ValueError("recycle_days must come after remind_days")
        return self


class Stale(Section):
    """Accepted or contacted handoffs that never progress (none by default)."""

    tiers: dict[str, StalePolicy] = Field(default_factory=dict)
    reason: str = Field("stale", description="The recycle reason")


class Sla(Section):
    """SLA clocks: per-tier deadlines, the early warning, escalation and reject reasons."""

    tiers: dict[str, SlaPolicy] = Field(default_factory=dict)
    warning_at: float = Field(0.6, gt=0, lt=1, description="Warn at this share of the accept time")
    max_reassignments: int = Field(
        2, ge=0, description="Breaches reassign this often, then escalate"
    )
    working_hours_only: bool = Field(
        False, description="Count SLA minutes only inside the assigned rep's working hours"
    )
    reject_reasons: list[str] = Field(
        default_factory=lambda: ["not_a_fit", "no_budget", "wrong_contact", "duplicate"]
    )
    reject_policies: dict[str, RejectPolicy] = Field(
        default_factory=dict,
        description="Reject reason -> its policy; a reason left out is recycled at once",
    )
    stale: Stale = Field(
        default_factory=Stale, description="Reminder and recycle for handoffs without feedback"
    )
    manager_queue: ManagerQueueSla = Field(
        default_factory=ManagerQueueSla,
        description="The manager queue's own clock after an escalation (none by default)",
    )
    feedback_from: Literal["owner_or_manager", "anyone"] = Field(
        "owner_or_manager",
        description="Who may accept, contact, reject or convert a handoff: its rep or a "
        "manager of its team (rep_id required), or anyone",
    )

    @model_validator(mode="after")
    def _policies_for_known_reasons(self) -> "Sla":
        unknown = sorted(set(self.reject_policies) - set(self.reject_reasons))
        if unknown:
            raise ValueError(f"reject_policies name unknown reject reasons {unknown}")
        return self
