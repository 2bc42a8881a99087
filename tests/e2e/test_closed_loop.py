"""Closing the loop end to end: each platform's documented payload carries campaign data in
at ingest; GET /v1/funnel reads leads, MQLs, money and insights back per campaign."""

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared.kafka import SALES_INSIGHTS
from tests.e2e.test_ingest_webhooks import SECRETS, signed
from tests.helpers import eventually, minutes_ago, read_topic, start_all

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)
# HubSpot webhooks v3: one property per event; the original source's drill-down names the
# campaign (the contact's email arrives in the same batch).
HUBSPOT = [
    {
        "eventId": 7001,
        "subscriptionId": 25,
        "portalId": 33,
        "appId": 1160452,
        "occurredAt": NOW_MS - 60_000,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        "objectId": 501,
        "changeSource": "ANALYTICS",
        "propertyName": "hs_analytics_source_data_1",
        "propertyValue": "hs-spring",
    },
    {
        "eventId": 7002,
        "subscriptionId": 25,
        "portalId": 33,
        "appId": 1160452,
        "occurredAt": NOW_MS - 59_000,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        "objectId": 501,
        "changeSource": "ANALYTICS",
        "propertyName": "hs_analytics_source",
        "propertyValue": "PAID_SEARCH",
    },
]
# Mautic's form_on_submit: the page the form was on (`referer`) carries the UTM parameters.
MAUTIC = {
    "mautic.form_on_submit": [
        {
            "submission": {
                "id": 71,
                "form": {"id": 1, "name": "Demo", "alias": "demo"},
                "lead": {"id": 77, "fields": {"core": {"email": {"value": "mau@loop.example"}}}},
                "referer": "https://acme.example/demo?utm_source=newsletter&utm_medium=email"
                "&utm_campaign=mautic-spring",
            },
            "timestamp": minutes_ago(3),
        }
    ]
}
# Segment's track call: context.campaign holds the UTM parameters (Segment spec, Context).
SEGMENT = {
    "type": "track",
    "event": "Webinar Registered",
    "messageId": "ajs-loop-1",
    "anonymousId": "a-loop-1",
    "context": {
        "traits": {"email": "seg@loop.example"},
        "campaign": {"name": "seg-spring", "source": "linkedin", "medium": "paid_social"},
    },
    "timestamp": minutes_ago(3),
}
# The template of docs/marketo-webhook-template.md with its touch filled in by Marketo.
MARKETO = {
    "id": "77-form_submit-loop",
    "identity": {"email": "mkt@loop.example", "external_ids": {"marketo": "77"}},
    "activity": {
        "type": "form_submit",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=3)).strftime("%Y-%m-%d %H:%M:%S"),
    },
    "touch": {"program": "mkt-spring", "smart_campaign": "Webinar signups", "source": "Web"},
}
# The native API: pricing, then a demo request from an ad (50 points: an MQL), with its touch.
NATIVE = [
    {
        "id": "loop-0",
        "identity": {"email": "ana@loop.example"},
        "activity": {"type": "pricing_page_view", "occurred_at": minutes_ago(2.5)},
        "touch": {"source": "google", "medium": "cpc", "campaign": "native-spring"},
    },
    {
        "id": "loop-1",
        "identity": {"email": "ana@loop.example"},
        "attributes": {"company": "Acme", "country": "DE"},
        "activity": {
            "type": "demo_request",
            "occurred_at": minutes_ago(2),
            "properties": {"url": "https://acme.example/demo?utm_term=lead+routing"},
        },
        "touch": {"source": "google", "medium": "cpc", "campaign": "native-spring"},
    },
]


async def test_each_platforms_campaign_reaches_the_funnel_breakdown(settings, services):
    services["ingest"].env.update(SECRETS)
    await start_all(services.values())
    ingest, handoff = services["ingest"].url, services["handoff"].url
    async with httpx.AsyncClient() as client:
        for source, payload in (
            ("hubspot", HUBSPOT),
            ("mautic", MAUTIC),
            ("segment", SEGMENT),
            ("marketo", MARKETO),
        ):
            body = json.dumps(payload).encode()
            url = f"{ingest}/v1/webhooks/{source}"
            response = await client.post(url, content=body, headers=signed(source, body, url))
            assert response.status_code == 202, (source, response.text)
        assert (await client.post(f"{ingest}/v1/events", json=NATIVE)).status_code == 202

        campaigns = {"hs-spring", "mautic-spring", "seg-spring", "mkt-spring", "native-spring"}

        async def by_campaign():
            funnel = await client.get(f"{handoff}/v1/funnel", params={"group_by": "campaign"})
            groups = {g["key"]: g for g in funnel.json()["breakdown"]["groups"]}
            return groups if campaigns <= set(groups) else None

        # Sales works the native lead: accepted with an insight, converted with its worth.
        async def native_handoff():
            rows = (await client.get(f"{handoff}/v1/handoffs")).json()
            return next((h for h in rows if h["lead_key"] == "email:ana@loop.example"), None)

        ana = await eventually(native_handoff, 60, "the native lead's handoff")
        groups = await eventually(by_campaign, 60, "a lead for every platform's campaign")
        assert {k: groups[k]["leads"] for k in campaigns} == dict.fromkeys(campaigns, 1.0)
        assert groups["native-spring"]["mqls"] == 1.0
        assert groups["hs-spring"]["mqls"] == 0.0
        assert ana["touches"]["first"]["campaign"] == "native-spring"
        # The demo request qualified the lead: its page URL added the keyword.
        assert ana["touches"]["qualifying"]["term"] == "lead routing"
        assert ana["touches"]["first"]["term"] is None
        post = lambda action, **body: client.post(  # noqa: E731
            f"{handoff}/v1/handoffs/{ana['handoff_id']}/{action}",
            json={"rep_id": ana["rep_id"], **body},
        )
        accepted = await post(
            "accept", tags={"objection": ["price"], "competitor": ["pipedrive"]}, note="Q3 budget"
        )
        assert accepted.status_code == 200, accepted.text
        refused = await post("contact", tags={"objection": ["bananas"]})
        assert refused.status_code == 422
        converted = await post(
            "convert", converted_to="opportunity", amount="15000.50", currency="EUR"
        )
        assert converted.status_code == 200, converted.text

        funnel = (
            await client.get(
                f"{handoff}/v1/funnel", params={"group_by": "campaign", "attribution": "linear"}
            )
        ).json()
        native = next(g for g in funnel["breakdown"]["groups"] if g["key"] == "native-spring")
        assert (native["handoffs"], native["accepted"], native["accept_rate"]) == (1, 1, 1.0)
        assert native["pipeline"] == {"EUR": "15000.50"}
        assert funnel["pipeline"] == {"EUR": "15000.50"}
        by_source = (
            await client.get(f"{handoff}/v1/funnel", params={"group_by": "source"})
        ).json()["breakdown"]["groups"]
        assert {g["key"] for g in by_source} >= {"google", "linkedin", "newsletter", "Web"}
        insights = (await client.get(f"{handoff}/v1/insights")).json()
        (spring,) = [g for g in insights["groups"] if g["key"] == "native-spring"]
        assert spring["tags"] == {"competitor": {"pipedrive": 1}, "objection": {"price": 1}}
        assert spring["latest_notes"] == ["Q3 budget"]

    (record,) = await read_topic(settings.kafka_bootstrap, settings.topic(SALES_INSIGHTS), 1)
    event = json.loads(record.value)
    assert event["type"] == "leadrouter.insight.recorded"
    assert event["data"]["tags"]["objection"] == ["price"]
    assert event["data"]["touches"]["first"]["campaign"] == "native-spring"
