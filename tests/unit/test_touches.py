"""Touches: where each platform's payload says a lead came from, and how scoring keeps a
lead's first, qualifying and last touch (pure; no Kafka, no database)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.ingest.normalise import NativeLeadEvent, native_to_cloud_event
from services.ingest.sources import hubspot, marketo, mautic, segment
from services.scoring.touches import LeadTouches, add_touch, merge_touches, qualify
from shared.events import Touch

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def touch_of(normalised: Any) -> dict[str, Any] | None:
    """The one event's touch, without the fields it left empty."""
    ((_, event),) = normalised.events
    touch: dict[str, Any] | None = event.data["touch"]
    return {k: v for k, v in touch.items() if v is not None} if touch else None


def test_segment_takes_context_campaign_then_the_page_urls_utm_parameters() -> None:
    message = {
        "type": "page",
        "messageId": "m-1",
        "anonymousId": "a-1",
        "timestamp": "2026-11-23T09:30:00Z",
        "context": {
            "traits": {"email": "ana@acme.example"},
            "campaign": {"name": "spring-demo", "source": "google", "medium": "cpc"},
            "page": {"url": "https://acme.example/p?utm_term=crm&utm_source=bing"},
        },
        "properties": {"url": "https://acme.example/p?utm_content=ad-7"},
    }
    assert touch_of(segment.normalise(message)) == {
        "source": "google",  # context.campaign wins over the URL
        "medium": "cpc",
        "campaign": "spring-demo",
        "term": "crm",
        "content": "ad-7",
        "original": False,
    }


def test_hubspot_source_properties_make_original_and_latest_touches() -> None:
    def change(name: str, value: str, event_id: int) -> dict[str, Any]:
        return {
            "eventId": event_id,
            "objectId": 123,
            "occurredAt": 1795424400000,
            "subscriptionType": "contact.propertyChange",
            "propertyName": name,
            "propertyValue": value,
        }

    original = touch_of(hubspot.normalise([change("hs_analytics_source", "PAID_SEARCH", 1)]))
    assert original == {"medium": "paid_search", "original": True}
    drill = touch_of(hubspot.normalise([change("hs_analytics_source_data_1", "spring", 2)]))
    assert drill == {"campaign": "spring", "original": True}
    latest = touch_of(hubspot.normalise([change("hs_latest_source", "EMAIL_MARKETING", 3)]))
    assert latest == {"medium": "email_marketing", "original": False}
    assert touch_of(hubspot.normalise([change("jobtitle", "CTO", 4)])) is None


def test_marketo_program_is_the_campaign_and_the_smart_campaign_its_content() -> None:
    touch = touch_of(marketo.normalise(marketo.EXAMPLE))
    assert touch == {
        "source": "Web",
        "campaign": "Spring Webinar",
        "content": "Webinar signups",
        "original": False,
    }
    unfilled = {**marketo.EXAMPLE, "touch": {"program": "", "smart_campaign": ""}}
    assert touch_of(marketo.normalise(unfilled)) is None  # empty Marketo tokens


def test_mautic_page_hit_takes_its_query_url_and_utm_tags() -> None:
    payload = {
        "mautic.page_on_hit": [
            {
                "hit": {
                    "id": 9,
                    "dateHit": "2026-11-23T09:30:00+00:00",
                    "url": "https://acme.example/demo?utm_campaign=spring&utm_source=newsletter",
                    "query": {"utm_medium": "email"},
                    "source": "email",
                    "lead": {
                        "id": 42,
                        "fields": {"core": {"email": {"value": "ana@acme.example"}}},
                        "utmtags": [{"utm_content": "header-button"}],
                    },
                },
                "timestamp": "2026-11-23T09:30:00+00:00",
            }
        ]
    }
    assert touch_of(mautic.normalise(payload)) == {
        "source": "newsletter",
        "medium": "email",
        "campaign": "spring",
        "content": "header-button",
        "original": False,
    }


def test_native_events_take_a_touch_and_fill_it_from_the_url() -> None:
    item = NativeLeadEvent.model_validate(
        {
            "id": "w-1",
            "identity": {"email": "ana@acme.example"},
            "activity": {
                "type": "page_view",
                "occurred_at": "2026-11-23T09:30:00Z",
                "properties": {"url": "https://acme.example/?utm_medium=cpc&utm_campaign=x"},
            },
            "touch": {"campaign": "spring", "source": "linkedin"},
        }
    )
    assert native_to_cloud_event(item, "api").data["touch"] == {
        "source": "linkedin",
        "medium": "cpc",
        "campaign": "spring",
        "term": None,
        "content": None,
        "original": False,
    }  # explicit fields win; the URL fills the medium


def test_a_lead_keeps_its_first_qualifying_and_last_touch() -> None:
    ad = Touch(source="google", campaign="spring")
    mail = Touch(source="newsletter", campaign="nurture")
    touches = add_touch(LeadTouches(), ad, T0)
    touches = add_touch(touches, None, T0 + timedelta(hours=1))  # no touch: nothing changes
    touches = qualify(add_touch(touches, mail, T0 + timedelta(days=1)))
    assert touches.first and touches.first["campaign"] == "spring"
    assert touches.qualifying and touches.qualifying["campaign"] == "nurture"
    assert touches.last == touches.qualifying


def test_a_platforms_original_source_is_the_first_touch_whenever_it_arrives() -> None:
    touches = add_touch(LeadTouches(), Touch(campaign="spring"), T0)
    touches = add_touch(touches, Touch(medium="paid_search", original=True), T0 + timedelta(days=2))
    touches = add_touch(touches, Touch(campaign="brand", original=True), T0 + timedelta(days=3))
    assert touches.first is not None
    assert (touches.first["medium"], touches.first["campaign"]) == ("paid_search", "brand")
    assert touches.last and touches.last["campaign"] == "spring"


def test_merged_leads_keep_the_earliest_first_and_the_latest_last_touch() -> None:
    a = add_touch(LeadTouches(), Touch(campaign="a"), T0)
    b = add_touch(LeadTouches(), Touch(campaign="b"), T0 - timedelta(days=1))
    b = add_touch(b, Touch(campaign="c"), T0 + timedelta(days=1))
    merged = merge_touches(a, b)
    assert merged.first and merged.first["campaign"] == "b"
    assert merged.last and merged.last["campaign"] == "c"


touch_strategy = st.builds(
    Touch,
    source=st.sampled_from([None, "google", "bing", "newsletter"]),
    medium=st.sampled_from([None, "cpc", "email"]),
    campaign=st.sampled_from(["a", "b", "c", "d"]),
)
arrivals = st.lists(
    st.tuples(touch_strategy, st.integers(min_value=0, max_value=5)), min_size=1, max_size=8
)


@given(arrivals, st.randoms())
def test_first_and_last_touch_do_not_depend_on_arrival_order(events, random) -> None:
    def fold(order: list[tuple[Touch, int]]) -> LeadTouches:
        touches = LeadTouches()
        for touch, day in order:
            touches = add_touch(touches, touch, T0 + timedelta(days=day))
        return touches

    shuffled = list(events)
    random.shuffle(shuffled)
    in_order, other = fold(events), fold(shuffled)
    assert (in_order.first, in_order.last) == (other.first, other.last)
