"""Outbound webhooks' pure rules: matching, retry schedule, signing, Slack messages, playbook."""

import base64
import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from standardwebhooks import Webhook

from services.handoff.webhooks import WebhookSecretMissing, load_secret
from services.handoff.webhooks.core import matches, retry_delay_s, signed_headers
from services.handoff.webhooks.formats import FORMATS
from services.handoff.webhooks.formats.slack import message
from shared.asyncapi import EXAMPLE_TIME, TOPICS, example_event
from shared.events import HandoffData
from shared.playbook import PlaybookError, parse_playbook
from shared.playbook.webhooks import DEFAULT_RETRY_SCHEDULE_S, WebhookSubscription
from shared.settings import REPO_ROOT

HANDOFFS = next(t for t in TOPICS if t.name == "handoffs")
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def sub(**fields: object) -> WebhookSubscription:
    return WebhookSubscription.model_validate(
        {"name": "crm", "url": "https://crm.example/hook", "events": ["assigned"], **fields}
    )


def data(**fields: object) -> HandoffData:
    event = example_event(HANDOFFS, "leadrouter.handoff.assigned")
    return HandoffData.model_validate({**event.data, **fields})


def test_a_subscription_gets_only_its_kinds_teams_and_tiers() -> None:
    hot_sales = data(team="sales", tier="hot")
    assert matches(sub(), "leadrouter.handoff.assigned", hot_sales)
    assert not matches(sub(), "leadrouter.handoff.accepted", hot_sales)
    assert not matches(sub(), "leadrouter.lifecycle.assigned", hot_sales)
    assert matches(sub(teams=["sales"], tiers=["hot"]), "leadrouter.handoff.assigned", hot_sales)
    assert not matches(sub(teams=["enterprise"]), "leadrouter.handoff.assigned", hot_sales)
    assert not matches(sub(tiers=["warm", "cold"]), "leadrouter.handoff.assigned", hot_sales)


def test_retries_back_off_over_hours_then_stop() -> None:
    default = sub()
    delays = [retry_delay_s(default, n) for n in range(1, len(DEFAULT_RETRY_SCHEDULE_S) + 2)]
    assert delays[:-1] == list(DEFAULT_RETRY_SCHEDULE_S) and delays[-1] is None
    assert all(b > a for a, b in pairwise(DEFAULT_RETRY_SCHEDULE_S))  # exponential-ish
    assert sum(DEFAULT_RETRY_SCHEDULE_S) > 12 * 3600  # "for hours"
    assert retry_delay_s(sub(retry_schedule_s=[1, 2]), 3) is None


def test_signatures_verify_with_the_standard_webhooks_library() -> None:
    body = b'{"id": "e1", "data": {"name": "J\xc3\xbcrgen"}}'
    headers = signed_headers(Webhook(SECRET), "e1", EXAMPLE_TIME, body, "application/json")
    receiver = Webhook(SECRET)
    assert headers["webhook-id"] == "e1"
    assert headers["webhook-timestamp"] == str(int(EXAMPLE_TIME.timestamp()))
    with pytest.raises(Exception, match="too old"):  # the library's replay protection
        receiver.verify(body, headers)
    fresh = signed_headers(Webhook(SECRET), "e1", datetime.now(UTC), body, "application/json")
    assert receiver.verify(body, fresh) == json.loads(body)
    with pytest.raises(Exception, match="signature"):
        receiver.verify(body.replace(b"e1", b"e2"), fresh)


def test_the_slack_message_names_the_rep_the_lead_the_reason_and_the_deadline() -> None:
    event = example_event(HANDOFFS, "leadrouter.handoff.assigned")
    msg = message(event)
    assert msg["text"] == "New hot lead for Ben Okafor: ana@acme.example"
    details = msg["blocks"][1]["text"]["text"]
    assert "ana@acme.example (Acme)" in details and "fair rotation chose Ben Okafor" in details
    deadline = int((EXAMPLE_TIME + timedelta(minutes=5)).timestamp())
    assert f"*Accept by:* <!date^{deadline}^" in details and "09:35 UTC>" in details
    breached = message(example_event(HANDOFFS, "leadrouter.handoff.sla_breached"))
    assert breached["text"].startswith("SLA breached: Ben Okafor")
    for kind in ("queued", "reassigned", "accepted", "rejected", "recycled", "converted"):
        text = message(example_event(HANDOFFS, f"leadrouter.handoff.{kind}"))["text"]
        assert not text.startswith("Handoff "), kind  # every kind has its own headline


def test_the_cloudevents_format_is_the_event_as_on_kafka() -> None:
    event = example_event(HANDOFFS, "leadrouter.handoff.assigned")
    assert FORMATS["cloudevents"].render(event) == event.to_bytes()
    assert FORMATS["cloudevents"].CONTENT_TYPE == "application/cloudevents+json"


def test_the_playbook_refuses_unknown_kinds_teams_and_duplicate_names() -> None:
    base = (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text() + "\nwebhooks:\n"
    ok = parse_playbook(
        base + '  - { name: crm, url: "https://crm.example/h", events: [assigned], '
        "teams: [sales], tiers: [hot] }\n"
    )
    assert ok.webhooks[0].secret_variable == "LEADROUTER_WEBHOOK_CRM_SECRET"
    with pytest.raises(PlaybookError, match="unknown handoff events"):
        parse_playbook(base + '  - { name: crm, url: "https://c.example", events: [hired] }\n')
    with pytest.raises(PlaybookError, match="unknown teams or tiers"):
        parse_playbook(
            base + '  - { name: crm, url: "https://c.example", events: [assigned], teams: [x] }\n'
        )
    with pytest.raises(PlaybookError, match="unique"):
        parse_playbook(
            base + '  - { name: crm, url: "https://c.example", events: [assigned] }\n'
            '  - { name: crm, url: "https://d.example", events: [queued] }\n'
        )
    with pytest.raises(PlaybookError, match="url"):
        parse_playbook(base + "  - { name: crm, url: not-a-url, events: [assigned] }\n")


def test_a_secret_comes_from_its_variable_or_file_and_a_bad_one_is_refused(tmp_path) -> None:
    crm = sub()
    assert load_secret(crm, {"LEADROUTER_WEBHOOK_CRM_SECRET": SECRET}) == SECRET
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    assert load_secret(crm, {"LEADROUTER_WEBHOOK_CRM_SECRET_FILE": str(path)}) == SECRET
    with pytest.raises(WebhookSecretMissing, match="LEADROUTER_WEBHOOK_CRM_SECRET"):
        load_secret(crm, {})
    with pytest.raises(WebhookSecretMissing, match="does not decode"):
        load_secret(crm, {"LEADROUTER_WEBHOOK_CRM_SECRET": "whsec_!!!not base64"})


def test_the_documented_subscriptions_are_valid_playbook_sections() -> None:
    example = (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text()
    commented = example[example.index("# webhooks:") :]
    uncommented = "\n".join(line.removeprefix("# ") for line in commented.splitlines())
    assert len(parse_playbook(example + "\n" + uncommented).webhooks) == 2
    docs = (REPO_ROOT / "docs" / "webhooks.md").read_text()
    block = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    hooks = parse_playbook(example + "\n" + block).webhooks
    assert [h.name for h in hooks] == ["crm", "sales-slack"] and hooks[1].format == "slack"
