"""Each platform's documented payload shape, normalised into lead events."""

import pytest

from services.ingest.sources import Unusable, hubspot, marketo, mautic, segment
from shared.events import LEAD_ACTIVITY, LeadActivityData
from shared.settings import Settings

# Shaped like HubSpot's webhooks documentation example (a JSON array of events).
HUBSPOT = [
    {
        "objectId": 1246965,
        "propertyName": "lifecyclestage",
        "propertyValue": "subscriber",
        "changeSource": "ACADEMY",
        "eventId": 3816279340,
        "subscriptionId": 25,
        "portalId": 33,
        "appId": 1160452,
        "occurredAt": 1462216307945,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
    },
    {
        "objectId": 1246978,
        "changeSource": "IMPORT",
        "eventId": 3816279480,
        "subscriptionId": 22,
        "portalId": 33,
        "appId": 1160452,
        "occurredAt": 1462216307945,
        "subscriptionType": "contact.creation",
        "attemptNumber": 0,
    },
    {
        "objectId": 77,
        "eventId": 3816279481,
        "subscriptionId": 9,
        "portalId": 33,
        "appId": 1160452,
        "occurredAt": 1462216307945,
        "subscriptionType": "deal.creation",
        "attemptNumber": 0,
    },
    {
        "objectId": 78,
        "subscriptionId": 9,
        "occurredAt": 1462216307945,
        "subscriptionType": "contact.creation",
    },
]


def data(event):
    return LeadActivityData.model_validate(event.data)


def test_hubspot_contacts_become_events_others_are_ignored_or_dead_lettered():
    out = hubspot.normalise(HUBSPOT)
    assert [kind for kind, _ in out.events] == ["contact.propertyChange", "contact.creation"]
    change, creation = (event for _, event in out.events)
    assert change.type == LEAD_ACTIVITY
    assert change.subject == "hubspot:1246965"
    assert data(change).attributes == {"hubspot_lifecycle_stage": "subscriber"}
    assert data(change).activity.type == "property_change"
    assert change.time.isoformat() == "2016-05-02T19:11:47.945000+00:00"
    assert data(creation).activity.type == "contact_created"
    assert out.ignored == ["other"]
    assert [(kind, reason) for kind, _, reason in out.unusable] == [
        ("contact.creation", "no eventId")
    ]


def test_hubspot_event_ids_are_stable_across_retries():
    first = hubspot.normalise(HUBSPOT).events[0][1]
    retry = hubspot.normalise([{**HUBSPOT[0], "attemptNumber": 1}]).events[0][1]
    assert first.id == retry.id


def test_hubspot_email_and_size_changes():
    out = hubspot.normalise(
        [
            {
                **HUBSPOT[0],
                "eventId": 1,
                "propertyName": "email",
                "propertyValue": "Ana@Acme.example",
            },
            {
                **HUBSPOT[0],
                "eventId": 2,
                "propertyName": "numberofemployees",
                "propertyValue": "250",
            },
        ]
    )
    email, size = (event for _, event in out.events)
    assert email.subject == "email:ana@acme.example"
    assert data(size).attributes == {"company_size": 250}


def test_hubspot_needs_an_array():
    with pytest.raises(Unusable):
        hubspot.normalise({"eventId": 1})


def mautic_contact(contact_id=42, email="ana@acme.example"):
    return {
        "id": contact_id,
        "points": 10,
        "fields": {
            "core": {
                "email": {"alias": "email", "value": email},
                "firstname": {"alias": "firstname", "value": "Ana"},
                "company": {"alias": "company", "value": "Acme"},
                "position": {"alias": "position", "value": "Head of Ops"},
            }
        },
    }


MAUTIC = {
    "mautic.form_on_submit": [
        {
            "submission": {
                "id": 7,
                "form": {"id": 1, "name": "Demo request", "alias": "demo"},
                "lead": mautic_contact(),
                "referer": "https://acme.example/demo",
                "dateSubmitted": "2026-11-23T09:30:00+00:00",
                "results": {"email": "ana@acme.example"},
            },
            "timestamp": "2026-11-23T09:30:00+00:00",
        }
    ],
    "mautic.page_on_hit": [
        {
            "hit": {
                "id": 9,
                "url": "https://acme.example/pricing",
                "urlTitle": "Pricing",
                "lead": mautic_contact(),
            },
            "timestamp": "2026-11-23T09:31:00+00:00",
        }
    ],
    "mautic.lead_post_save_new": [
        {"contact": mautic_contact(43, ""), "timestamp": "2026-11-23T09:32:00+00:00"}
    ],
    "mautic.company_post_save": [{"company": {"id": 1}}],
    "mautic.email_on_open": [{"stat": {"id": 3}, "timestamp": "2026-11-23T09:33:00+00:00"}],
}


def test_mautic_triggers_become_events():
    out = mautic.normalise(MAUTIC)
    kinds = [kind for kind, _ in out.events]
    assert kinds == ["mautic.form_on_submit", "mautic.page_on_hit", "mautic.lead_post_save_new"]
    form, hit, new = (event for _, event in out.events)
    assert data(form).activity.type == "form_submit"
    assert data(form).activity.properties == {
        "form": "demo",
        "url": "https://acme.example/demo",
        "path": "/demo",
        "host": "acme.example",
    }
    assert data(form).attributes == {
        "first_name": "Ana",
        "company": "Acme",
        "job_title": "Head of Ops",
    }
    assert form.subject == "email:ana@acme.example"
    assert data(hit).activity.type == "pricing_page_view"
    assert new.subject == "mautic:43"  # not yet identified by email
    assert out.ignored == ["other"]
    assert [reason for _, _, reason in out.unusable] == ["no contact with an id"]


def test_segment_spec_messages():
    identify = {
        "type": "identify",
        "messageId": "m1",
        "anonymousId": "a1",
        "userId": "u1",
        "traits": {
            "email": "ana@acme.example",
            "title": "VP Sales",
            "company": {"name": "Acme", "employee_count": 250},
        },
        "timestamp": "2026-11-23T09:30:00.000Z",
    }
    track = {
        "type": "track",
        "event": "Demo Request",
        "messageId": "m2",
        "anonymousId": "a1",
        "properties": {"plan": "team", "nested": {"x": 1}},
        "timestamp": "2026-11-23T09:31:00Z",
    }
    page = {
        "type": "page",
        "messageId": "m3",
        "anonymousId": "a1",
        "properties": {"path": "/pricing", "title": "Pricing"},
        "timestamp": "2026-11-23T09:32:00Z",
    }
    screen = {"type": "screen", "messageId": "m4", "anonymousId": "a1"}  # no time
    unknown = {"type": "teleport", "messageId": "m5"}
    out = segment.normalise(
        {"batch": [identify, track, page, screen, unknown, {"type": "track", "event": "x"}]}
    )
    (_, i), (_, t), (_, p) = out.events
    assert i.subject == "email:ana@acme.example"
    assert data(i).identity.external_ids == {"segment_user": "u1", "segment_anonymous": "a1"}
    assert data(i).attributes == {"job_title": "VP Sales", "company": "Acme", "company_size": 250}
    assert data(t).activity.type == "demo_request"
    assert data(t).activity.properties == {"plan": "team"}
    assert t.subject == "segment_anonymous:a1"
    assert data(p).activity.type == "pricing_page_view"
    assert out.ignored == ["other"]
    assert [reason for _, _, reason in out.unusable] == [
        "the event has no time (an ISO 8601 string)",
        "no messageId",
    ]


def test_segment_screen_group_and_alias_calls_and_the_page_and_campaign_of_a_call():
    at = "2026-11-23T09:30:00Z"
    context = {
        "page": {
            "path": "/pricing",
            "url": "https://acme.example/pricing?utm_source=google",
            "referrer": "https://www.google.com/",
        },
        "campaign": {"source": "google", "medium": "cpc", "name": "spring", "term": "crm"},
    }
    track = {
        "type": "track",
        "event": "Signed Up",
        "messageId": "t1",
        "anonymousId": "a1",
        "context": context,
        "timestamp": at,
    }
    screen = {
        "type": "screen",
        "name": "Pricing",
        "messageId": "s1",
        "userId": "u1",
        "timestamp": at,
    }
    group = {
        "type": "group",
        "groupId": "acc-9",
        "userId": "u1",
        "messageId": "g1",
        "traits": {
            "name": "Acme",
            "industry": "Software",
            "employees": "250",
            "email": "billing@acme.example",
        },
        "timestamp": at,
    }
    alias = {
        "type": "alias",
        "previousId": "a1",
        "userId": "u1",
        "messageId": "al1",
        "timestamp": at,
    }
    out = segment.normalise([track, screen, group, alias])
    assert not out.unusable and not out.ignored
    (_, t), (_, s), (_, g), (_, a) = out.events
    assert data(t).activity.properties == {
        "path": "/pricing",
        "url": "https://acme.example/pricing?utm_source=google",
        "host": "acme.example",
        "query": "utm_source=google",
        "referrer": "https://www.google.com/",
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "spring",
        "utm_term": "crm",
    }
    assert (data(s).activity.type, data(s).activity.properties) == (
        "screen_view",
        {"name": "Pricing"},
    )
    # A group call describes the person's account: never the account's email as hers.
    assert data(g).activity.type == "group" and data(g).identity.email is None
    assert data(g).attributes == {
        "account_id": "acc-9",
        "company": "Acme",
        "industry": "Software",
        "company_size": 250,
    }
    # An alias binds both names to one person (scoring merges what each had done).
    assert data(a).identity.external_ids == {"segment_user": "u1", "segment_anonymous": "a1"}
    no_previous = segment.normalise({**alias, "previousId": None})
    assert [r for _, _, r in no_previous.unusable] == ["an alias call needs previousId and userId"]


def test_marketo_template_in_the_instance_time_zone():
    item = {
        "id": "42-1001-2026-11-23 09:30:00",
        "identity": {"email": "ana@acme.example", "external_ids": {"marketo": "42"}},
        "attributes": {"company": "Acme", "company_size": "250", "industry": ""},
        "activity": {"type": "form_submit", "occurred_at": "2026-11-23 09:30:00"},
    }
    ((_, event),) = marketo.normalise(item, Settings(marketo_timezone="America/Chicago")).events
    assert event.time.isoformat() == "2026-11-23T09:30:00-06:00"
    assert data(event).attributes == {"company": "Acme", "company_size": 250}
    bad = marketo.normalise({**item, "activity": {"type": "Form Fill!", "occurred_at": "x"}})
    assert bad.events == [] and len(bad.unusable) == 1


def test_mautic_documented_shapes_unsubscribe_and_delivery_metadata():
    contact = mautic_contact()
    contact["fields"]["professional"] = {"position": {"alias": "position", "value": "CTO"}}
    del contact["fields"]["core"]["position"]
    payload = {
        # Documented as the email-send shape: the contact and email at the top, no "stat".
        "mautic.email_on_open": [
            {
                "email": {"id": 5, "name": "Newsletter"},
                "contact": contact,
                "idHash": "5f2a",
                "timestamp": "2026-11-23T09:40:00+00:00",
            }
        ],
        "mautic.lead_channel_subscription_changed": [
            {
                "contact": contact,
                "channel": "email",
                "old_status": "contactable",
                "new_status": "unsubscribed",
                "timestamp": "2026-11-23T09:41:00+00:00",
            },
            {
                "contact": contact,
                "channel": "email",
                "old_status": "unsubscribed",
                "new_status": "contactable",
                "timestamp": "2026-11-23T09:42:00+00:00",
            },
        ],
        "timestamp": "2026-11-23T09:43:00+00:00",  # delivery metadata, not a trigger
    }
    out = mautic.normalise(payload)
    (_, opened), (_, unsubscribed) = out.events
    assert data(opened).activity.type == "email_open"
    assert data(opened).activity.properties == {"email": "Newsletter"}
    assert data(opened).attributes["job_title"] == "CTO"  # any field group
    assert data(unsubscribed).activity.type == "unsubscribe"
    assert data(unsubscribed).activity.properties == {
        "channel": "email",
        "previous_status": "contactable",
    }
    assert out.ignored == ["mautic.lead_channel_subscription_changed"]  # re-subscribed
    assert out.unusable == []


def test_mautic_redelivery_keeps_its_event_ids():
    first = [event.id for _, event in mautic.normalise(MAUTIC).events]
    again = [event.id for _, event in mautic.normalise(MAUTIC).events]
    assert first == again and len(set(first)) == len(first)


def test_mautic_contact_without_fields_is_identified_by_its_id():
    item = {"contact": {"id": 44, "fields": []}, "timestamp": "2026-11-23T09:32:00+00:00"}
    ((_, event),) = mautic.normalise({"mautic.lead_post_save_update": [item]}).events
    assert event.subject == "mautic:44"


def test_segment_retried_message_keeps_its_id_and_needs_an_object():
    message = {
        "type": "page",
        "messageId": "m9",
        "userId": "u9",
        "properties": {"url": "https://acme.example/blog"},
        "timestamp": "2026-11-23T09:32:00Z",
    }
    (_, first), (_, retry) = segment.normalise([message, dict(message)]).events
    assert first.id == retry.id
    assert data(first).activity.type == "page_view"
    assert first.subject == "segment_user:u9"
    with pytest.raises(Unusable):
        segment.normalise("identify")


def test_native_events_and_webhooks_with_the_same_id_stay_apart():
    # Ids derive from (source, the platform's id): HubSpot 1 and Segment "1" are two events.
    hub = hubspot.normalise([{**HUBSPOT[1], "eventId": 1}]).events[0][1]
    message = {"type": "identify", "messageId": "1", "userId": "u", "timestamp": "2026-11-23"}
    ((_, seg),) = segment.normalise(message).events
    assert hub.id != seg.id


def test_hubspot_events_sharing_an_event_id_stay_distinct_and_retries_still_dedup():
    # HubSpot documents eventId as not unique: two contacts' changes in one batch share it.
    first = {**HUBSPOT[0], "eventId": 42, "objectId": 1, "propertyName": "company"}
    second = {**first, "objectId": 2}
    out = hubspot.normalise([first, second])
    ids = [event.id for _, event in out.events]
    assert len(set(ids)) == 2
    retry = hubspot.normalise([{**second, "attemptNumber": 3}]).events[0][1]
    assert retry.id == ids[1]


def test_a_segment_message_id_shared_by_a_page_and_an_identify_call_gives_two_events():
    page = {
        "type": "page",
        "messageId": "shared-1",
        "userId": "u1",
        "properties": {"path": "/blog"},
        "timestamp": "2026-11-23T09:30:00Z",
    }
    identify = {**page, "type": "identify", "traits": {"email": "ana@acme.example"}}
    out = segment.normalise([page, identify])
    assert len({event.id for _, event in out.events}) == 2


def test_hubspot_items_that_name_their_type_event_type_are_accepted():
    # The webhooks overview example names the type `eventType` instead of subscriptionType.
    item = {k: v for k, v in HUBSPOT[1].items() if k != "subscriptionType"}
    out = hubspot.normalise([{**item, "eventType": "contact.creation"}])
    assert [kind for kind, _ in out.events] == ["contact.creation"]
    assert not out.unusable and not out.ignored


# The objects Mautic's "Send Test Payload" button posts: one object per trigger (not a list),
# no item timestamp, the delivery time at the top (shapes of Mautic's WebhookPayload files).
MAUTIC_TEST_PAYLOAD = {
    "mautic.form_on_submit": {
        "submission": {
            "id": 13,
            "form": {"id": 4, "name": "lead points", "alias": "leadpoints"},
            "lead": {
                "id": 26,
                "points": 10,
                "fields": {"core": {"email": {"alias": "email", "value": "email@formsubmit.com"}}},
            },
            "dateSubmitted": "2015-08-26T01:30:34+00:00",
            "referer": "http://mautic-gh.com/s/forms/preview/4",
        }
    },
    "mautic.page_on_hit": {
        "hit": {
            "dateHit": "2015-08-26T01:32:39+00:00",
            "page": {"id": 1, "title": "PageHit", "alias": "pagehit"},
            "lead": {"id": 26, "fields": {"core": {"email": {"value": "email@formsubmit.com"}}}},
            "url": "http://mautic-gh.com/index_dev.php/pagehit",
        }
    },
    "mautic.email_on_open": {
        "stat": {
            "id": 8,
            "emailAddress": "test@test.com",
            "dateRead": "2015-08-26T01:35:53+00:00",
            "lead": {"id": 26, "fields": {"core": {"email": {"value": "test@test.com"}}}},
            "email": {"id": 5, "name": "Email"},
        }
    },
    "timestamp": "2026-11-23T09:30:00+00:00",
}


def test_mautic_send_test_payload_shapes_are_accepted_not_vanished():
    out = mautic.normalise(MAUTIC_TEST_PAYLOAD)
    assert len(out.events) == 3 and not out.ignored and not out.unusable
    kinds = {kind: data(event).activity for kind, event in out.events}
    assert kinds["mautic.form_on_submit"].type == "form_submit"
    assert kinds["mautic.page_on_hit"].type == "page_view"
    assert kinds["mautic.email_on_open"].type == "email_open"
    assert kinds["mautic.page_on_hit"].occurred_at.isoformat() == "2015-08-26T01:32:39+00:00"


def test_one_pricing_visit_has_the_same_activity_and_url_fields_from_every_platform():
    url = "https://acme.example/pricing?plan=team"
    contact = {"id": 5, "fields": {"core": {"email": {"value": "ana@acme.example"}}}}
    from_mautic = mautic.normalise(
        {
            "mautic.page_on_hit": [
                {"hit": {"id": 1, "url": url, "lead": contact}, "timestamp": "2026-11-23T09:30:00Z"}
            ]
        }
    )
    from_segment = segment.normalise(
        {
            "type": "page",
            "messageId": "p1",
            "userId": "u1",
            "properties": {"path": "/pricing", "url": url, "search": "?plan=team"},
            "timestamp": "2026-11-23T09:30:00Z",
        }
    )
    activities = [data(out.events[0][1]).activity for out in (from_mautic, from_segment)]
    assert {a.type for a in activities} == {"pricing_page_view"}
    for activity in activities:
        fields = {k: activity.properties.get(k) for k in ("url", "path", "host", "query")}
        assert fields == {
            "url": url,
            "path": "/pricing",
            "host": "acme.example",
            "query": "plan=team",
        }
