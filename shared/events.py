"""The CloudEvents 1.0 envelope and the data schemas of leadrouter's topics."""

import functools
import hashlib
import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)
from pydantic.networks import validate_email

from shared.vocabulary import (
    ConversionStage,
    FeedbackAction,
    HandoffKind,
    HandoffStatus,
    LifecycleTransition,
    Stage,
)

CONTENT_TYPE = "application/cloudevents+json"

# Namespace for deterministic event ids: the same source event always gets the same id.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c1a6e-3f5c-4c53-9a55-3c1b8d0e7a21")

LEAD_ACTIVITY = "leadrouter.lead.activity"
# On the lead-events topic: a platform asked to erase a person (Segment delete, HubSpot privacy
# deletion); ordered with that person's events, so later events start afresh. Its data is a
# lead activity (the identity to erase, activity type erasure_requested, no attributes).
ERASURE_REQUESTED = "leadrouter.lead.erasure_requested"
LIFECYCLE_PREFIX = "leadrouter.lifecycle."
# On the lifecycle topic: a lead was erased; its data holds the lead key and no personal data
# (stage "erased", score 0, no email, attributes or explanation).
LIFECYCLE_ERASED = LIFECYCLE_PREFIX + "erased"
HANDOFF_PREFIX = "leadrouter.handoff."
FEEDBACK_PREFIX = "leadrouter.feedback."
# On the sales-insights topic: what sales heard, tagged from the playbook's vocabulary.
SALES_INSIGHT = "leadrouter.insight.recorded"

# Every event type of the contract (leadrouter.<prefix><name>); the AsyncAPI document and the
# contract tests are built from these, so a new kind is added here first.
LIFECYCLE_TRANSITIONS = tuple(t.value for t in LifecycleTransition)
HANDOFF_KINDS = tuple(k.value for k in HandoffKind)
FEEDBACK_ACTIONS = tuple(a.value for a in FeedbackAction)
# The handoff events that are sales' own outcomes for a lead, and the outcome each one is:
# scoring applies them live and in a replay, the backtest replays them as facts.
SALES_OUTCOMES = {
    HANDOFF_PREFIX + "recycled": "recycled",
    HANDOFF_PREFIX + "converted": "converted",
}


def derived_event_id(*parts: str) -> str:
    """A deterministic event id from the parts that identify an event (source, its own id, ...).

    The text of uuid.uuid5(EVENT_ID_NAMESPACE, parts joined by \\x1f), computed without
    building UUID objects (one per lifecycle event and handoff on the hot path).
    """
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(parts).encode(), usedforsecurity=False).digest()
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event in structured JSON mode; `subject` is the lead key."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, description="Unique and deterministic: drop ids already seen")
    source: str = Field(min_length=1, description="Who produced it, e.g. leadrouter/handoff")
    type: str = Field(min_length=1, description="leadrouter.<area>.<kind>: says what `data` is")
    time: datetime
    subject: str = Field(min_length=1, description="The lead key; also the Kafka record key")
    datacontenttype: str = "application/json"
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        """The structured-mode JSON encoding published to Kafka."""
        # The serializer's bytes as they are: model_dump_json() decodes them to text, which
        # encode() then copied back (a third of this call for a lead event).
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "CloudEvent":
        """Decode and validate a structured-mode JSON event."""
        return cls.model_validate_json(raw)


# Lower-case ASCII addresses of the everyday shape (dot-atom local part, hyphenated labels, a
# letters-only top-level domain): email-validator accepts each unchanged, which
# tests/unit/test_events.py checks over generated addresses. Everything else takes the full check.
PLAIN_EMAIL = re.compile(
    r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*@(?:[a-z0-9]+(?:-[a-z0-9]+)*\.)+[a-z]{2,63}"
)
_SPECIAL_USE_TLDS = frozenset(SPECIAL_USE_DOMAIN_NAMES)


@functools.lru_cache(maxsize=65_536)
def _valid_email(value: str) -> str:
    # A new lead's email took ~190 µs in email-validator, a third of scoring's CPU per new
    # lead; the everyday shape is recognised by one regex instead, and a returning lead's
    # address is not looked at again (invalid ones raise and are not remembered).
    local, _, domain = value.partition("@")
    if (
        len(value) <= 254
        and len(local) <= 64
        and PLAIN_EMAIL.fullmatch(value)
        and all(len(label) <= 63 for label in domain.split("."))
        and domain.rpartition(".")[2] not in _SPECIAL_USE_TLDS
    ):
        return value
    return _checked_email(value)


def _checked_email(value: str) -> str:
    # Pydantic's EmailStr check (remembered by _valid_email).
    return validate_email(value)[1]


# Money on the wire: an amount above zero with at most two decimals (a JSON number or a
# decimal string; written as a string so no reader rounds it) and its ISO 4217 currency code.
# NUMERIC(18,2): the bound and the step put max_digits and decimal_places into the JSON Schema.
Amount = Annotated[
    Decimal,
    Field(gt=0, lt=Decimal(10) ** 16, multiple_of=Decimal("0.01"), max_digits=18, decimal_places=2),
]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]

# The same validation and schema as pydantic's EmailStr.
Email = Annotated[
    str, AfterValidator(_valid_email), WithJsonSchema({"type": "string", "format": "email"})
]


class Identity(BaseModel):
    """Who the lead is: an email and/or ids in other systems (e.g. {"hubspot": "123"})."""

    email: Email | None = None
    external_ids: dict[str, str] = Field(default_factory=dict)

    @field_validator("email")
    @classmethod
    def _normalise_email(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else value


class Activity(BaseModel):
    """Something the lead did, and when it happened (event time, not arrival time)."""

    type: str = Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_.]*$")
    occurred_at: AwareDatetime
    properties: dict[str, Any] = Field(default_factory=dict)


TOUCH_FIELDS = ("source", "medium", "campaign", "term", "content")


class Touch(BaseModel):
    """Where a lead came from at one activity: its marketing source, as the platform gave it
    (docs/closed-loop.md says where each field comes from on each platform)."""

    source: str | None = Field(None, max_length=200, description="e.g. utm_source: google")
    medium: str | None = Field(None, max_length=200, description="e.g. utm_medium: cpc")
    campaign: str | None = Field(None, max_length=200, description="e.g. utm_campaign")
    term: str | None = Field(None, max_length=200, description="e.g. utm_term: the keyword")
    content: str | None = Field(None, max_length=200, description="e.g. utm_content: the ad")
    original: bool = Field(
        False,
        description="The platform says this is where the lead first came from (HubSpot's "
        "original source): it is the lead's first touch whenever it arrives",
    )


class LeadActivityData(BaseModel):
    """The `data` of a lead activity event on the lead-events topic."""

    identity: Identity
    attributes: dict[str, Any] = Field(default_factory=dict)
    activity: Activity
    touch: Touch | None = Field(
        None, description="The marketing source of this activity, where the platform gave one"
    )


class TouchAt(Touch):
    """A touch and when the activity that carried it happened."""

    at: datetime | None = None


class Touches(BaseModel):
    """A lead's first touch, the touch that qualified it (its last touch when it became an
    MQL) and its last touch; each null until the lead has one."""

    first: TouchAt | None = None
    qualifying: TouchAt | None = None
    last: TouchAt | None = None


def lead_key(identity: Identity) -> str:
    """The Kafka key and CloudEvents subject of a lead: its email, else its first external id."""
    if identity.email:
        return f"email:{identity.email}"
    if identity.external_ids:
        system, value = sorted(identity.external_ids.items())[0]
        return f"{system}:{value}"
    raise ValueError("a lead needs an email or an external id")


class ExplanationLine(BaseModel):
    """One rule's contribution to a lead's score."""

    rule: str = Field(description="The playbook rule, e.g. `fit: company_size >= 200`")
    points: float


class SalesSignal(BaseModel):
    """An activity the playbook marks as a sales signal (`taxonomy.signals`), and when."""

    type: str = Field(description="The activity type, e.g. demo_request")
    at: datetime = Field(description="When the activity happened")


class LifecycleData(BaseModel):
    """The `data` of a lifecycle transition: the lead in full (handoff needs no lookup)."""

    transition: LifecycleTransition = Field(
        description="What changed: the type's last part, e.g. became_mql"
    )
    lead_key: str = Field(description="The lead's key: its email, else its first external id")
    email: str | None = None
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Profile attributes as the platforms sent them"
    )
    stage: Stage = Field(description="The lifecycle stage after the transition (playbook taxonomy)")
    score: int = Field(description="Total score (fit + behaviour) when it happened")
    fit_score: float | None = None
    behaviour_score: float | None = None
    tier: str | None = Field(None, description="hot, warm or cold (playbook tiers)")
    previous_tier: str | None = None
    previous_stage: Stage | None = None
    explanation: list[ExplanationLine] = Field(
        default_factory=list, description="Each rule's points, largest first"
    )
    qualifying_activity_at: datetime | None = Field(
        None, description="When the activity behind this transition happened"
    )
    merged_keys: list[str] = Field(
        default_factory=list,
        description="Keys of leads that turned out to be this person and were merged into it",
    )
    touches: Touches | None = Field(
        None, description="Where the lead came from: first, qualifying and last touch"
    )
    signal: SalesSignal | None = Field(
        None, description="signal: the activity the playbook marks as a sales signal"
    )


class HandoffData(BaseModel):
    """The `data` of a handoff event that sales tools consume."""

    handoff_id: str = Field(description="Stable id of the handoff: use it to send feedback")
    status: HandoffStatus = Field(description="Where the handoff stands after the event")
    lead_key: str = Field(description="The lead's key, also the event's subject and Kafka key")
    rep_id: str | None = Field(description="The rep who has the lead (null while queued)")
    rep_name: str | None = None
    team: str | None = Field(None, description="The playbook team the lead was routed to")
    email: str | None = None
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Profile attributes as the platforms sent them"
    )
    score: int = Field(description="Total score when the lead was handed off")
    stage: Stage
    explanation: list[ExplanationLine] = Field(
        default_factory=list, description="Each rule's points, largest first"
    )
    routing_reason: str = Field(description="Why this rep (or queue), in words")
    reason: str | None = Field(None, description="rejected / recycled: the playbook's reason code")
    converted_to: ConversionStage | None = Field(
        None, description="converted: the stage reached (sql, opportunity or customer)"
    )
    tier: str | None = Field(None, description="hot, warm or cold: decides the SLA")
    previous_tier: str | None = Field(
        None, description="tier_raised: the tier before the rise (the SLA tightened)"
    )
    queue: str | None = Field(None, description="Set while the lead waits in a queue")
    previous_rep_id: str | None = Field(None, description="reassigned: who had it before")
    accept_by: datetime | None = Field(None, description="SLA: accept before this time")
    contact_by: datetime | None = Field(None, description="SLA: first contact before this time")
    qualifying_activity_at: datetime | None = Field(
        None, description="When the activity that qualified the lead happened"
    )
    queue_due_at: datetime | None = Field(
        None, description="escalated: when the wait in the manager's queue breaches"
    )
    recycle_policy: str | None = Field(
        None,
        description="rejected / recycled: the reject reason's policy (recycle, revisit, "
        "suppress, merge, disqualify)",
    )
    revisit_at: datetime | None = Field(
        None, description="revisit policy: when the lead is routed again"
    )
    suppressed_until: datetime | None = Field(
        None, description="suppress policy: not routed again before then unless its fit changes"
    )
    clock: Literal["accept", "contact"] | None = Field(
        None, description="sla_breached: which clock ran out"
    )
    touches: Touches | None = Field(
        None, description="Where the lead came from: first, qualifying and last touch"
    )
    signal: SalesSignal | None = Field(
        None, description="signal: the sales signal the lead just did (the rep's cue)"
    )


# Insight tags by kind (objection, pain_point, competitor, persona) and a short note.
InsightTagsData = dict[
    Annotated[str, Field(pattern=r"^[a-z_]+$")],
    list[Annotated[str, Field(min_length=1, max_length=100)]],
]
Note = Annotated[str, Field(max_length=2000)]


ConversionStageText = Annotated[
    str, WithJsonSchema({"type": "string", "enum": [s.value for s in ConversionStage]})
]


class FeedbackData(BaseModel):
    """The `data` of a sales-feedback event (type leadrouter.feedback.<action>)."""

    handoff_id: str = Field(description="The handoff, from its handoff events")
    rep_id: str | None = Field(None, description="Who gives the feedback (for the record)")
    reason: str | None = Field(None, description="reject: a reason code from the playbook")
    # Any text is read: an unknown stage is refused by the handoff service (logged and counted,
    # not dead-lettered), so the schema lists the values without the decoding enforcing them.
    converted_to: ConversionStageText | None = Field(
        None, description="convert: sql, opportunity or customer"
    )
    amount: Amount | None = Field(
        None,
        description="convert to opportunity or customer: the deal's value (above 0, at most "
        "two decimals); the funnel sums it as pipeline or revenue",
    )
    currency: Currency | None = Field(
        None,
        description="ISO 4217 code of `amount` (default: the playbook's "
        "closed_loop.reporting_currency)",
    )
    tags: InsightTagsData | None = Field(
        None,
        description="What sales heard, as tags from the playbook's closed_loop.insight_tags "
        "(objection, pain_point, competitor, persona: each a list of allowed values)",
    )
    note: Note | None = Field(
        None, description="A short note for marketing (at most closed_loop.note_max_chars)"
    )


class SalesInsightData(BaseModel):
    """The `data` of a sales insight: what sales heard about a lead, with where it came from,
    so marketing can read it by campaign and routing rule."""

    handoff_id: str
    lead_key: str = Field(description="The lead's key, also the event's subject and Kafka key")
    action: str = Field(description="The feedback it came with: accept, contact, reject, convert")
    rep_id: str | None = None
    team: str | None = None
    routing_rule: str | None = None
    tier: str | None = None
    reason: str | None = Field(None, description="reject: the reason code")
    converted_to: str | None = Field(None, description="convert: the stage reached")
    tags: InsightTagsData = Field(default_factory=dict)
    note: str | None = Field(None, description="Removed when the lead is erased")
    touches: Touches | None = Field(
        None, description="Where the lead came from: first, qualifying and last touch"
    )
