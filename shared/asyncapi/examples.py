"""Example events of every type, built through the data models (an example that no longer
validates fails at once)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel

from shared.events import (
    FEEDBACK_PREFIX,
    HANDOFF_PREFIX,
    LIFECYCLE_PREFIX,
    Activity,
    ExplanationLine,
    FeedbackData,
    HandoffData,
    Identity,
    LeadActivityData,
    LifecycleData,
    SalesInsightData,
    SalesSignal,
    Touch,
    TouchAt,
    Touches,
)
from shared.goal_events import GoalStatusData

EXAMPLE_TIME = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
EXAMPLE_LEAD = "email:ana@acme.example"


def _explanation() -> list[ExplanationLine]:
    return [
        ExplanationLine(rule="behaviour: demo_request", points=40),
        ExplanationLine(rule="fit: company_size >= 200", points=20),
        ExplanationLine(rule="behaviour: pricing_page_view", points=10),
    ]


def activity_example(event_type: str) -> BaseModel:
    return LeadActivityData(
        identity=Identity(email="ana@acme.example", external_ids={"hubspot": "123"}),
        attributes={"company": "Acme", "company_size": 250, "country": "DE"},
        activity=Activity(type="demo_request", occurred_at=EXAMPLE_TIME, properties={}),
        touch=Touch(source="google", medium="cpc", campaign="spring-demo"),
    )


def lifecycle_example(event_type: str) -> BaseModel:
    transition = event_type.removeprefix(LIFECYCLE_PREFIX)
    stage = {
        "became_lead": "lead",
        "disqualified": "disqualified",
        "recycled": "recycled",
        "became_sql": "sql",
        "became_opportunity": "opportunity",
        "became_customer": "customer",
    }.get(transition, "mql")
    return LifecycleData(
        transition=transition,
        lead_key=EXAMPLE_LEAD,
        email="ana@acme.example",
        attributes={"company": "Acme", "company_size": 250, "country": "DE"},
        stage=stage,
        previous_stage="lead" if transition == "became_mql" else "mql",
        score=70,
        fit_score=20.0,
        behaviour_score=50.0,
        tier="hot",
        previous_tier="warm" if transition == "tier_changed" else None,
        explanation=_explanation(),
        qualifying_activity_at=EXAMPLE_TIME,
        touches=_touches_example(),
        signal=_signal_example() if transition == "signal" else None,
    )


def _signal_example() -> SalesSignal:
    return SalesSignal(type="demo_request", at=EXAMPLE_TIME)


def handoff_example(event_type: str) -> BaseModel:
    kind = event_type.removeprefix(HANDOFF_PREFIX)
    status = {
        "queued": "queued",
        "accepted": "accepted",
        "contacted": "contacted",
        "rejected": "rejected",
        "recycled": "rejected",
        "converted": "converted",
        "manager_queue_warning": "escalated",
        "manager_queue_breached": "escalated",
        "stale_reminder": "accepted",
        "signal": "accepted",
    }.get(kind, "assigned")
    queued = kind == "queued"
    escalated = kind.startswith("manager_queue")
    return HandoffData(
        handoff_id="6b0d2c4e-8f0a-5d3e-9c51-2f7a4b8e1d10",
        status=status,
        lead_key=EXAMPLE_LEAD,
        rep_id=None if queued or escalated else "rep-ben",
        rep_name=None if queued or escalated else "Ben Okafor",
        team="sales",
        email="ana@acme.example",
        attributes={"company": "Acme", "company_size": 250, "country": "DE"},
        score=70,
        stage="mql",
        explanation=_explanation(),
        routing_reason="rule everyone_else: no eligible rep in sales; queued"
        if queued
        else "rule everyone_else -> team sales: fair rotation chose Ben Okafor "
        "(12 earlier handoffs, weight 1) among 3 eligible rep(s)",
        reason="not_a_fit" if kind in {"rejected", "recycled"} else None,
        converted_to="sql" if kind == "converted" else None,
        tier="hot",
        previous_tier="warm" if kind == "tier_raised" else None,
        queue="sales-queue" if queued else "sales-manager" if escalated else None,
        queue_due_at=EXAMPLE_TIME + timedelta(minutes=60) if escalated else None,
        previous_rep_id="rep-chen" if kind == "reassigned" else None,
        accept_by=None if queued else EXAMPLE_TIME + timedelta(minutes=5),
        contact_by=None if queued else EXAMPLE_TIME + timedelta(minutes=15),
        qualifying_activity_at=EXAMPLE_TIME,
        signal=_signal_example() if kind == "signal" else None,
    )


def feedback_example(event_type: str) -> BaseModel:
    action = event_type.removeprefix(FEEDBACK_PREFIX)
    return FeedbackData(
        handoff_id="6b0d2c4e-8f0a-5d3e-9c51-2f7a4b8e1d10",
        rep_id="rep-ben",
        reason="not_a_fit" if action == "reject" else None,
        converted_to="opportunity" if action == "convert" else None,
        amount=Decimal("12000") if action == "convert" else None,
        currency="EUR" if action == "convert" else None,
    )


def _touches_example() -> Touches:
    paid = TouchAt(source="google", medium="cpc", campaign="spring-demo", at=EXAMPLE_TIME)
    return Touches(first=paid, qualifying=paid, last=paid)


def insight_example(event_type: str) -> BaseModel:
    return SalesInsightData(
        handoff_id="6b0d2c4e-8f0a-5d3e-9c51-2f7a4b8e1d10",
        lead_key="email:ana@acme.example",
        action="reject",
        rep_id="rep-ben",
        team="sales",
        routing_rule="enterprise_emea",
        tier="hot",
        reason="no_budget",
        tags={"objection": ["price"], "competitor": ["pipedrive"]},
        note="Budget frozen until Q3; asked us to come back then.",
        touches=_touches_example(),
    )


def goal_example(event_type: str) -> BaseModel:
    return GoalStatusData(
        goal_id="mqls-per-month",
        title="MQLs per month",
        metric="mqls",
        owner="marketing",
        period="month",
        period_start=datetime(2026, 11, 1, tzinfo=UTC),
        period_end=datetime(2026, 12, 1, tzinfo=UTC),
        target=120,
        actual=61,
        expected=88.0,
        projection=83.18,
        status="at_risk",
        previous_status="on_track",
    )
