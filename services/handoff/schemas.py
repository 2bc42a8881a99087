"""What the handoff API answers and takes: handoffs, reps, feedback and the funnel."""

from dataclasses import asdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from services.handoff.lifecycle import ConversionStage, HandoffStatus
from services.handoff.routing import RepLoad
from shared.playbook.handoff import WorkingHours
from shared.strict import StrictBool


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong and, in `errors`, which field."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, str]] | None = Field(
        None, description="Each offending field as a JSON pointer with its message"
    )


def problems(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error statuses, each served as application/problem+json."""
    schema = Problem.model_json_schema()
    return {
        code: {
            "description": text,
            "content": {"application/problem+json": {"schema": schema}},
        }
        for code, text in described.items()
    }


class HandoffOut(BaseModel):
    """A handoff as sales tools and the board see it."""

    handoff_id: str
    lead_key: str
    status: HandoffStatus
    rep_id: str | None
    team: str
    queue: str | None = Field(description="Set while the lead waits in a queue")
    tier: str | None
    score: int
    email: str | None
    attributes: dict[str, Any]
    explanation: list[dict[str, Any]]
    routing_rule: str | None
    routing_reason: str = Field(description="Why this rep (or queue), in words")
    qualifying_activity_at: datetime | None
    assigned_at: datetime | None
    accept_by: datetime | None
    contact_by: datetime | None
    accepted_at: datetime | None
    contacted_at: datetime | None
    closed_at: datetime | None
    sla_seconds_left: int | None = Field(
        description="Seconds left on the running SLA clock (negative when overdue)"
    )
    accept_breaches: int = Field(description="Accept deadlines missed (one per rep who missed)")
    contact_breached: bool
    reassignments: int
    previous_reps: list[str]
    reason: str | None = Field(description="The reject reason code")
    converted_to: ConversionStage | None = Field(description="The furthest stage reached")
    created_at: datetime | None


class WorkingHoursOut(BaseModel):
    """When a rep takes leads: local wall-clock times in their own time zone."""

    timezone: str = Field(description="IANA time zone, e.g. Europe/Berlin")
    days: list[str]
    start: str = Field(pattern=r"^\d{2}:\d{2}(:\d{2})?$", description="Local time, HH:MM:SS")
    end: str = Field(pattern=r"^\d{2}:\d{2}(:\d{2})?$", description="Local time, HH:MM:SS")

    @classmethod
    def of(cls, hours: WorkingHours | None) -> "WorkingHoursOut | None":
        """The playbook's hours as the API shows them (a time without a zone is not RFC 3339)."""
        if hours is None:
            return None
        return cls(
            timezone=hours.timezone,
            days=hours.days,
            start=hours.start.isoformat(),
            end=hours.end.isoformat(),
        )


class RepOut(BaseModel):
    """A rep with their fairness ledger, open handoffs and availability."""

    rep_id: str
    name: str
    team: str
    weight: int
    active: bool = Field(description="In the playbook's roster")
    assigned_total: int = Field(description="The fairness ledger: handoffs ever assigned")
    open_handoffs: int
    capacity: int
    available: bool = Field(description="false while out of office")
    working_hours: WorkingHoursOut | None

    @classmethod
    def of(cls, rep: RepLoad) -> "RepOut":
        """A rep as the API shows them."""
        return cls.model_validate(
            {**asdict(rep), "working_hours": WorkingHoursOut.of(rep.working_hours)}
        )


class FeedbackBody(BaseModel):
    """What a sales tool sends with accept, contact, reject or convert."""

    rep_id: str | None = Field(
        None,
        description="Who gives the feedback: the handoff's rep or a manager of its team "
        "(required unless the playbook's sla.feedback_from is anyone)",
    )
    reason: str | None = Field(None, description="reject: a reason code from the playbook")
    converted_to: ConversionStage | None = Field(
        None, description="convert: the stage the lead reached (forward only)"
    )


class AvailabilityBody(BaseModel):
    available: StrictBool = Field(
        description="false: out of office; no new leads until true again"
    )


class AvailabilityOut(BaseModel):
    rep_id: str
    available: bool
    assigned_total: int = Field(description="The ledger the rep continues from")
    assigned_from_queue: int = Field(description="Queued leads given out by this change")


class Timing(BaseModel):
    median: float | None
    p90: float | None


class SlaAttainment(BaseModel):
    """Accept-SLA attainment over decided accept clocks only."""

    ratio: float | None = Field(description="met / (met + breached); null when none decided")
    met: int = Field(description="Handoffs accepted (or contacted) before their accept deadline")
    breached: int = Field(
        description="Accept deadlines missed: one per rep who let the deadline pass, plus "
        "handoffs past their deadline whose breach has not been processed yet"
    )
    undecided: int = Field(description="Handoffs still inside their accept deadline (left out)")
    counts: str = (
        "decided accept clocks of handoffs assigned in the window; contact breaches and "
        "undecided handoffs are not counted"
    )


class FunnelOut(BaseModel):
    """The numbers sales and marketing share, between `since` and `until`."""

    since: datetime
    until: datetime
    leads: int = Field(description="People who became leads (merged leads count once)")
    mqls: int
    sqls: int
    opportunities: int
    customers: int
    conversion: dict[str, float | None] = Field(description="Between consecutive stages")
    handoffs: int = Field(description="Handoffs assigned to a rep in the window")
    accepted: int
    sla_attainment: float | None = Field(description="Same as sla.ratio")
    sla: SlaAttainment
    time_to_accept_seconds: Timing
    time_to_first_contact_seconds: Timing
    breaches_by_team: dict[str, int] = Field(description="Handoffs with any SLA breach, by team")
    rejected_by_reason: dict[str, int] = Field(
        description="Rejections sales gave in the window, by the playbook's reason code"
    )
    recycled: int
