"""The catalogue: each topic of the contract, who writes and reads it, the types it carries."""

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from shared.asyncapi.examples import (
    EXAMPLE_LEAD,
    EXAMPLE_TIME,
    activity_example,
    feedback_example,
    goal_example,
    handoff_example,
    insight_example,
    lifecycle_example,
)
from shared.events import (
    ERASURE_REQUESTED,
    FEEDBACK_ACTIONS,
    FEEDBACK_PREFIX,
    HANDOFF_KINDS,
    HANDOFF_PREFIX,
    LEAD_ACTIVITY,
    LIFECYCLE_PREFIX,
    LIFECYCLE_TRANSITIONS,
    SALES_INSIGHT,
    CloudEvent,
    FeedbackData,
    HandoffData,
    LeadActivityData,
    LifecycleData,
    SalesInsightData,
    derived_event_id,
)
from shared.goal_events import GOAL_STATUS_CHANGED, GoalStatusData
from shared.kafka import (
    GOALS,
    HANDOFFS,
    LEAD_EVENTS,
    LEAD_LIFECYCLE,
    SALES_FEEDBACK,
    SALES_INSIGHTS,
)

# The contract's version: the major is the topics' `.v1`; a breaking change needs new topics.
CONTRACT_VERSION = "1.0.0"
TOPIC_VERSION = "v1"


@dataclass(frozen=True)
class Topic:
    """One topic of the contract: who writes it, who reads it, and the types it carries."""

    name: str
    title: str
    description: str
    data_model: type[BaseModel]
    types: tuple[str, ...]
    example: Callable[[str], BaseModel]
    written_by: str
    read_by: str
    # Who produces the records: a reader of leadrouter's topics breaks when a field goes; a
    # writer (sales tools on sales-feedback) breaks when a field becomes required.
    leadrouter_writes: bool = True
    # What the records are keyed by (the CloudEvents subject): a lead key, or a goal.
    keyed_by: str = "lead"


# One line per event type: when it is written (the message summaries in the document).
WHEN = {
    LEAD_ACTIVITY: "A lead did something (a form, a page view, a demo request, ...).",
    "leadrouter.lifecycle.became_lead": "A person is known for the first time.",
    "leadrouter.lifecycle.became_mql": "The score reached the MQL threshold: sales gets the lead.",
    "leadrouter.lifecycle.tier_changed": "The lead moved between hot, warm and cold.",
    "leadrouter.lifecycle.score_below_threshold": "An MQL's score fell below the threshold.",
    "leadrouter.lifecycle.disqualified": "A fit rule disqualified the lead (never routed).",
    "leadrouter.lifecycle.recycled": "Sales handed the lead back to marketing.",
    "leadrouter.lifecycle.became_sql": "Sales converted the lead to sales-qualified.",
    "leadrouter.lifecycle.became_opportunity": "Sales opened a deal for the lead.",
    "leadrouter.lifecycle.became_customer": "The deal closed.",
    "leadrouter.lifecycle.merged": "Records turned out to be one person: `merged_keys` now "
    "live under `lead_key` (count them once).",
    "leadrouter.lifecycle.erased": "The lead's personal data was erased: erase `lead_key` too "
    "(no email, attributes or explanation; stage erased, score 0).",
    "leadrouter.lifecycle.signal": "An mql (or later) lead did an activity the playbook marks "
    "as a sales signal (taxonomy.signals): `signal` names its type and time.",
    "leadrouter.lead.erasure_requested": "A platform asked to erase a person (Segment delete, "
    "HubSpot privacy deletion): `identity` names them.",
    "leadrouter.handoff.assigned": "A rep got the lead; the accept and contact clocks run.",
    "leadrouter.handoff.queued": "Nobody could take the lead; it waits in the team's queue.",
    "leadrouter.handoff.sla_warning": "Most of the accept time is gone and nobody accepted yet.",
    "leadrouter.handoff.sla_breached": "An accept or first-contact deadline passed.",
    "leadrouter.handoff.reassigned": "After a breach, another rep got the lead (or a manager's "
    "queue: `status` escalated, `rep_id` null).",
    "leadrouter.handoff.accepted": "The rep accepted; the first-contact clock runs.",
    "leadrouter.handoff.contacted": "The rep contacted the lead; the SLA clocks stop.",
    "leadrouter.handoff.rejected": "The rep rejected the lead, with a reason code.",
    "leadrouter.handoff.recycled": "After a rejection, the lead goes back to marketing.",
    "leadrouter.handoff.converted": "The lead became an SQL, an opportunity or a customer.",
    "leadrouter.handoff.tier_raised": "The lead's tier rose after its handoff (a demo request "
    "on a warm lead): new score, tier and explanation; the running SLA clock tightened to the "
    "new tier's, never loosened (`previous_tier`).",
    "leadrouter.handoff.manager_queue_warning": "An escalated lead has waited most of its "
    "time in the manager's queue (`queue_due_at`: when it breaches).",
    "leadrouter.handoff.manager_queue_breached": "Nobody worked an escalated lead in time; the "
    "playbook's final policy follows (`recycled` with reason unworked, or it keeps waiting).",
    "leadrouter.handoff.stale_reminder": "An accepted or contacted lead has had no feedback "
    "for the playbook's reminder days (sla.stale); it is recycled (reason stale) if none "
    "follows.",
    "leadrouter.handoff.signal": "The lead of an open handoff (assigned, accepted or "
    "contacted) did a sales signal (a demo request, a pricing visit: the playbook's "
    "taxonomy.signals): `signal` names its type and time, `rep_id` the rep to act; no clock "
    "changes.",
    "leadrouter.feedback.accept": "A sales tool says the rep accepted the handoff.",
    "leadrouter.feedback.contact": "A sales tool says the rep contacted the lead.",
    "leadrouter.feedback.reject": "A sales tool says the rep rejected the lead (`reason`).",
    "leadrouter.feedback.convert": "A sales tool says the lead converted (`converted_to`, "
    "with `amount` and `currency` for an opportunity or a customer).",
    SALES_INSIGHT: "Sales gave feedback with insight tags or a note: what they heard, with "
    "where the lead came from.",
    GOAL_STATUS_CHANGED: "A goal's status in its period changed (on track, at risk, off "
    "track, met, missed), with its figures.",
}

ORDERING = (
    "Records are keyed by the lead key (the CloudEvents `subject`, e.g. "
    "`email:ana@acme.example`), so one lead's events stay in one partition and in the order "
    "they were written; there is no order between different leads. Delivery is at least "
    "once: every event has a unique, deterministic `id`, so drop an id you have already seen."
)

TOPICS: tuple[Topic, ...] = (
    Topic(
        name=LEAD_EVENTS,
        title="Lead activity",
        description="What leads did, normalised from every marketing platform into one shape.",
        data_model=LeadActivityData,
        types=(LEAD_ACTIVITY, ERASURE_REQUESTED),
        example=activity_example,
        written_by="ingest",
        read_by="scoring",
    ),
    Topic(
        name=LEAD_LIFECYCLE,
        title="Lead lifecycle",
        description="Lifecycle transitions of a lead, with its profile, scores and explanation "
        "in full (readers need no lookup).",
        data_model=LifecycleData,
        types=tuple(LIFECYCLE_PREFIX + t for t in LIFECYCLE_TRANSITIONS),
        example=lifecycle_example,
        written_by="scoring (through its outbox)",
        read_by="handoff",
    ),
    Topic(
        name=HANDOFFS,
        title="Handoffs to sales",
        description="Every step of a lead's handoff to sales: routing, SLA warnings and "
        "breaches, reassignment, and the feedback sales gave. Sales tools subscribe here.",
        data_model=HandoffData,
        types=tuple(HANDOFF_PREFIX + k for k in HANDOFF_KINDS),
        example=handoff_example,
        written_by="handoff (through its outbox)",
        read_by="scoring (recycled, converted) and sales tools",
    ),
    Topic(
        name=SALES_FEEDBACK,
        title="Sales feedback",
        description="What sales tools tell leadrouter about a handoff (the same as the "
        "`POST /v1/handoffs/{id}/<action>` endpoints).",
        data_model=FeedbackData,
        types=tuple(FEEDBACK_PREFIX + a for a in FEEDBACK_ACTIONS),
        example=feedback_example,
        written_by="sales tools",
        read_by="handoff",
        leadrouter_writes=False,
    ),
    Topic(
        name=SALES_INSIGHTS,
        title="Sales insights",
        description="What sales heard from leads (objections, pain points, competitors, "
        "personas, a short note), tagged from the playbook's vocabulary, with the lead's "
        "touches, routing rule and tier so marketing can read it by campaign.",
        data_model=SalesInsightData,
        types=(SALES_INSIGHT,),
        example=insight_example,
        written_by="handoff (through its outbox)",
        read_by="marketing tools",
    ),
    Topic(
        name=GOALS,
        title="Goal status",
        description="A goal of the playbook (marketing's, sales' or both teams') changed "
        "status in its period, once per change: alert the team it belongs to. Keyed by "
        "`goal:<goal id>`, not by a lead.",
        data_model=GoalStatusData,
        types=(GOAL_STATUS_CHANGED,),
        example=goal_example,
        written_by="handoff (through its outbox)",
        read_by="dashboards and chat bots of both teams",
        keyed_by="goal",
    ),
)


def message_name(event_type: str) -> str:
    """The message's key in the document: the type without the `leadrouter.` prefix."""
    return event_type.removeprefix("leadrouter.")


def example_event(topic: Topic, event_type: str) -> CloudEvent:
    """A complete example event of a type, built through its data model."""
    return CloudEvent(
        id=derived_event_id("example", event_type),
        source=f"leadrouter/{topic.written_by.split()[0]}" if topic.leadrouter_writes else "crm",
        type=event_type,
        time=EXAMPLE_TIME,
        subject=EXAMPLE_LEAD if topic.keyed_by == "lead" else "goal:mqls-per-month",
        data=topic.example(event_type).model_dump(mode="json"),
    )


def topic_of(address: str) -> Topic | None:
    """The contract's topic of a concrete topic name (any namespace), None for a DLQ."""
    for topic in TOPICS:
        if address.endswith(f".{topic.name}.{TOPIC_VERSION}"):
            return topic
    return None
