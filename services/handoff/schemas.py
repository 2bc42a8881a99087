"""What the handoff API answers and takes: handoffs, reps, feedback and the funnel."""

from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from services.handoff.attribution import AttributionModel
from services.handoff.breakdown import GroupBy
from services.handoff.lifecycle import ConversionStage, HandoffStatus
from services.handoff.routing import RepLoad
from shared.events import Amount, Currency, InsightTagsData, Note, Touches
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
    opportunity_amount: Decimal | None = Field(
        None, description="What sales said the deal is worth when it became an opportunity"
    )
    opportunity_currency: str | None = Field(None, description="ISO 4217")
    customer_amount: Decimal | None = Field(
        None, description="What sales said the deal is worth when it became a customer"
    )
    customer_currency: str | None = Field(None, description="ISO 4217")
    touches: Touches | None = Field(
        None, description="Where the lead came from: first, qualifying and last touch"
    )


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
    amount: Amount | None = Field(
        None,
        description="convert to opportunity or customer: the deal's value (above 0, at most two "
        "decimals); summed as pipeline (opportunity) or revenue (customer) in the funnel",
    )
    currency: Currency | None = Field(
        None,
        description="ISO 4217 code of amount (default: the playbook's "
        "closed_loop.reporting_currency)",
    )
    tags: InsightTagsData | None = Field(
        None,
        description="What sales heard, from the playbook's closed_loop.insight_tags: "
        '{"objection": ["price"], "competitor": ["pipedrive"]} (kinds: objection, pain_point, '
        "competitor, persona); published on the sales-insights topic",
    )
    note: Note | None = Field(
        None, description="A short note for marketing (at most closed_loop.note_max_chars)"
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


class FunnelGroupOut(BaseModel):
    """One group of the breakdown: figures credited to it by the attribution model (so they
    may be fractions; the groups add up to the whole)."""

    key: str | None = Field(
        description="The source, medium, campaign, routing rule or tier; null: leads without "
        "one (no touch, still queued, ...)"
    )
    leads: float | None = Field(description="Null by routing rule or tier (not routed yet)")
    mqls: float
    sqls: float
    opportunities: float
    customers: float
    handoffs: float = Field(description="Handoffs routed in the window")
    accepted: float
    accept_rate: float | None = Field(description="accepted / handoffs")
    rejected_by_reason: dict[str, float]
    pipeline: dict[str, Decimal] = Field(description="Opportunity amounts, per currency")
    revenue: dict[str, Decimal] = Field(description="Customer amounts, per currency")
    median_speed_to_lead_seconds: float | None = Field(
        description="From the qualifying activity to a rep having the lead (queued time included)"
    )


class FunnelBreakdown(BaseModel):
    """The funnel by source, medium, campaign, routing rule or tier."""

    group_by: GroupBy
    attribution: AttributionModel = Field(
        description="How a conversion's credit is shared among the lead's touches (only used "
        "by source, medium and campaign)"
    )
    groups: list[FunnelGroupOut]


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
    pipeline: dict[str, Decimal] = Field(
        default_factory=dict,
        description="Amounts given with conversions to opportunity in the window, per ISO 4217 "
        "currency (decimal strings; currencies are never converted)",
    )
    revenue: dict[str, Decimal] = Field(
        default_factory=dict,
        description="Amounts given with conversions to customer in the window, per currency",
    )
    breakdown: FunnelBreakdown | None = Field(
        None, description="With group_by: the same numbers per source, medium, campaign, ..."
    )


class InsightGroupOut(BaseModel):
    """What sales heard about the leads of one campaign (or source, medium, rule, tier)."""

    key: str | None = Field(description="null: leads without one")
    insights: float = Field(description="Insights given, credited like the funnel's breakdown")
    tags: dict[str, dict[str, float]] = Field(description="Per kind, each value's count")
    latest_notes: list[str] = Field(description="The latest notes, newest first")


class InsightsOut(BaseModel):
    """Sales insights between two times, grouped."""

    since: datetime
    until: datetime
    group_by: GroupBy
    attribution: AttributionModel
    groups: list[InsightGroupOut]
