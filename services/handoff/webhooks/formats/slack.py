"""A Slack incoming-webhook message: the rep, the lead, why it was routed, the SLA deadline.

Works with Slack's incoming webhooks and with tools that take the same shape (Mattermost,
Rocket.Chat, Teams' Slack-compatible connectors): `text` for notifications, `blocks` for
the layout.
"""

import json
from datetime import datetime
from typing import Any

from shared.events import HANDOFF_PREFIX, CloudEvent, HandoffData

CONTENT_TYPE = "application/json"


def render(event: CloudEvent) -> bytes:
    """The Slack message of a handoff event."""
    return json.dumps(message(event)).encode()


def message(event: CloudEvent) -> dict[str, Any]:
    """The message as a dict: a one-line `text` and blocks with the details."""
    data = HandoffData.model_validate(event.data)
    kind = event.type.removeprefix(HANDOFF_PREFIX)
    headline = _headline(kind, data)
    lead = data.email or data.lead_key
    company = data.attributes.get("company")
    facts = [
        f"*Lead:* {lead}" + (f" ({company})" if company else ""),
        f"*Score:* {data.score}" + (f", {data.tier}" if data.tier else ""),
        f"*Why:* {data.routing_reason}",
    ]
    due = data.accept_by if data.status == "assigned" else data.contact_by
    if due and data.status in {"assigned", "accepted"}:
        verb = "Accept" if data.status == "assigned" else "First contact"
        facts.append(f"*{verb} by:* {_slack_time(due)}")
    if data.reason:
        facts.append(f"*Reason:* {data.reason}")
    return {
        "text": f"{headline}: {lead}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(facts)}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"handoff `{data.handoff_id}`"}],
            },
        ],
    }


def _headline(kind: str, data: HandoffData) -> str:
    rep = data.rep_name or data.rep_id or "nobody"
    tier = f"{data.tier} " if data.tier else ""
    return {
        "assigned": f"New {tier}lead for {rep}",
        "queued": f"A {tier}lead waits in {data.queue}",
        "sla_warning": f"SLA warning: {rep}, this {tier}lead is waiting",
        "sla_breached": f"SLA breached: {rep} has not acted on a {tier}lead",
        "reassigned": f"Reassigned to {rep}"
        if data.rep_id
        else f"Escalated to {data.queue} after an SLA breach",
        "accepted": f"{rep} accepted a {tier}lead",
        "contacted": f"{rep} contacted a {tier}lead",
        "rejected": f"{rep} rejected a lead",
        "recycled": "A lead went back to marketing",
        "converted": f"{rep} converted a lead to {data.converted_to}",
        "tier_raised": f"{rep}, your lead turned {tier}(was {data.previous_tier}): sooner SLA",
        "manager_queue_warning": f"A {tier}lead still waits in {data.queue}",
        "manager_queue_breached": f"Nobody worked a {tier}lead in {data.queue}",
        "stale_reminder": f"{rep}, no news on a {tier}lead: still working it?",
    }.get(kind, f"Handoff {kind}")


def _slack_time(at: datetime) -> str:
    """Slack shows a <!date> in each reader's own time zone; the fallback text is UTC."""
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{at:%Y-%m-%d %H:%M} UTC>"
