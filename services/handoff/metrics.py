"""The handoff service's Prometheus metrics (bounded labels: no lead ids, emails or rep ids)."""

from prometheus_client import Counter, Gauge, Histogram

# How long a lead waits for a rep: from a second to a day.
WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 900, 3600, 14400, 86400)
SLA_BUCKETS = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)

HANDOFF_EVENTS = Counter(
    "leadrouter_handoffs_total",
    "Handoff events published, by team, tier and outcome (the event kind)",
    ["team", "tier", "outcome"],
)
ROUTING_DECISIONS = Counter(
    "leadrouter_routing_decisions_total", "Routing decisions, by rule", ["rule"]
)
SLA_WARNINGS = Counter("leadrouter_sla_warnings_total", "SLA warnings sent", ["team", "tier"])
SLA_BREACHES = Counter(
    "leadrouter_sla_breaches_total", "SLA deadlines missed, by clock", ["team", "tier", "clock"]
)
SLA_OUTCOMES = Counter(
    "leadrouter_sla_outcomes_total",
    "Accept clocks decided: met (accepted in time) or breached (deadline passed); "
    "attainment is met / (met + breached), as GET /v1/funnel counts it",
    ["team", "tier", "outcome"],
)
TIME_TO_ACCEPT = Histogram(
    "leadrouter_time_to_accept_seconds", "Assigned to accepted", ["tier"], buckets=SLA_BUCKETS
)
TIME_TO_CONTACT = Histogram(
    "leadrouter_time_to_first_contact_seconds",
    "Assigned to first contact",
    ["tier"],
    buckets=SLA_BUCKETS,
)
SPEED_TO_LEAD = Histogram(
    "leadrouter_speed_to_lead_seconds",
    "From the qualifying activity to the lead's first assignment to a rep (queued time included)",
    ["tier"],
    buckets=WAIT_BUCKETS,
)
QUEUED_TIME = Histogram(
    "leadrouter_handoff_queued_seconds",
    "How long a lead waited in the fallback queue before its first assignment",
    ["tier"],
    buckets=WAIT_BUCKETS,
)
OPEN_HANDOFFS = Gauge(
    "leadrouter_handoffs_open", "Open handoffs, by tier (counted at most every 0.5 s)", ["tier"]
)
QUEUE_SIZE = Gauge(
    "leadrouter_handoff_queue_size",
    "Leads waiting in a queue, by queue and tier (counted at most every 0.5 s)",
    ["queue", "tier"],
)
REJECTIONS = Counter(
    "leadrouter_handoff_rejections_total",
    "Handoffs sales rejected, by team and the playbook's reject reason",
    ["team", "reason"],
)
FEEDBACK_REFUSED = Counter(
    "leadrouter_feedback_refused_total",
    "Sales feedback from Kafka that did not apply (unknown handoff, wrong state, wrong author)",
    ["action"],
)
# Goals (labels bounded by the playbook's goals): refreshed by the goals job, see docs/goals.md.
GOAL_FIGURES = Gauge(
    "leadrouter_goal_value",
    "A goal's figures in its current period: target, actual, expected (by now), projection",
    ["goal", "metric", "owner", "figure"],
)
GOAL_STATUS = Gauge(
    "leadrouter_goal_status",
    "1 for a goal's current status (on_track, at_risk, off_track, met, missed), else 0",
    ["goal", "owner", "status"],
)
GOAL_CHECK_FAILURES = Counter(
    "leadrouter_goal_check_failures_total",
    "Goals the periodic goals job could not evaluate (the others went on)",
    ["goal"],
)
MANAGER_QUEUE_SLA = Counter(
    "leadrouter_manager_queue_sla_total",
    "The manager queue's clock after an escalation: warnings and breaches (sla.manager_queue)",
    ["team", "tier", "event"],
)
RECYCLED = Counter(
    "leadrouter_handoffs_recycled_total",
    "Handoffs closed by a policy that sent the lead back to marketing, by reason and policy",
    ["team", "reason", "policy"],
)
ROUTING_SUPPRESSED = Counter(
    "leadrouter_routing_suppressed_total",
    "Qualified leads not routed because a reject policy holds them back (suppress, disqualify)",
)
STALE_HANDOFFS = Counter(
    "leadrouter_stale_handoffs_total",
    "Accepted or contacted handoffs without feedback: reminders sent and leads recycled "
    "(sla.stale)",
    ["team", "tier", "event"],
)
SALES_SIGNALS = Counter(
    "leadrouter_sales_signals_total",
    "Sales signals (playbook taxonomy.signals) of mql or later leads, by activity type and "
    "outcome: sent (to the rep of the lead's open handoff) or no_open_handoff",
    ["signal", "outcome"],
)
