"""The words of the contract: lifecycle stages and transitions, handoff kinds and statuses,
conversion stages and feedback actions.

Defined once here and used on the wire (shared/events.py), in the schemas, in the playbook
taxonomy and in the cores, so OpenAPI and AsyncAPI list the allowed values by themselves and
mypy catches a misspelt one. The values are the strings the topics always carried.
"""

from enum import StrEnum


class Stage(StrEnum):
    """A lead's lifecycle stage: the funnel in order, then recycled and disqualified beside it."""

    SUBSCRIBER = "subscriber"
    LEAD = "lead"
    MQL = "mql"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    RECYCLED = "recycled"
    DISQUALIFIED = "disqualified"
    # No lead is in it: the stage an `erased` lifecycle event carries (the lead's data is gone).
    ERASED = "erased"


# The stages a playbook defines and a lead can be in (every stage but `erased`).
LEAD_STAGES: tuple[Stage, ...] = tuple(s for s in Stage if s is not Stage.ERASED)


class ConversionStage(StrEnum):
    """The stages sales can report a lead reached, in funnel order."""

    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"


class LifecycleTransition(StrEnum):
    """What changed for a lead: the last part of a lifecycle event's type."""

    BECAME_LEAD = "became_lead"
    BECAME_MQL = "became_mql"
    TIER_CHANGED = "tier_changed"
    SCORE_BELOW_THRESHOLD = "score_below_threshold"
    DISQUALIFIED = "disqualified"
    RECYCLED = "recycled"
    BECAME_SQL = "became_sql"
    BECAME_OPPORTUNITY = "became_opportunity"
    BECAME_CUSTOMER = "became_customer"
    MERGED = "merged"
    ERASED = "erased"
    SIGNAL = "signal"  # an mql (or later) lead did an activity the playbook marks as a signal


# The transition sales' conversion to each stage publishes.
BECAME: dict[ConversionStage, LifecycleTransition] = {
    ConversionStage.SQL: LifecycleTransition.BECAME_SQL,
    ConversionStage.OPPORTUNITY: LifecycleTransition.BECAME_OPPORTUNITY,
    ConversionStage.CUSTOMER: LifecycleTransition.BECAME_CUSTOMER,
}


class HandoffKind(StrEnum):
    """What happened to a handoff: the last part of a handoff event's type."""

    ASSIGNED = "assigned"
    QUEUED = "queued"
    SLA_WARNING = "sla_warning"
    SLA_BREACHED = "sla_breached"
    REASSIGNED = "reassigned"
    ACCEPTED = "accepted"
    CONTACTED = "contacted"
    REJECTED = "rejected"
    RECYCLED = "recycled"
    CONVERTED = "converted"
    TIER_RAISED = "tier_raised"  # an open handoff's lead rose in tier: its SLA tightened
    MANAGER_QUEUE_WARNING = "manager_queue_warning"
    MANAGER_QUEUE_BREACHED = "manager_queue_breached"
    STALE_REMINDER = "stale_reminder"  # accepted or contacted, no feedback for N days
    SIGNAL = "signal"  # the lead of an open handoff did a sales signal (a demo request, ...)


class HandoffStatus(StrEnum):
    """Where a handoff stands."""

    QUEUED = "queued"  # waiting in the team's fallback queue for an eligible rep
    ASSIGNED = "assigned"
    ACCEPTED = "accepted"
    CONTACTED = "contacted"
    REJECTED = "rejected"
    CONVERTED = "converted"
    ESCALATED = "escalated"  # in the manager's queue after SLA breaches
    RECYCLED = "recycled"  # closed by a policy that sent the lead back to marketing (reason)
    ERASED = "erased"  # the lead's personal data was erased; closed, counts kept


class FeedbackAction(StrEnum):
    """What a sales tool reports about a handoff: the last part of a feedback event's type."""

    ACCEPT = "accept"
    CONTACT = "contact"
    REJECT = "reject"
    CONVERT = "convert"
