"""The replay's in-memory fold and its record decoder, without Kafka or PostgreSQL."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from harness.events import lead_activity, sales_outcome
from services.scoring.core import LeadState, apply_activity, to_us
from services.scoring.erasure import lead_hash
from services.scoring.identity import LeadsInMemory, identity_aliases, merged_lead
from services.scoring.rebuild import Rebuild, ReplayRecord, received_us
from shared.events import ERASURE_REQUESTED, LEAD_ACTIVITY, LeadActivityData
from shared.history import decode_record
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT

PLAYBOOK = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def event(subject, kind="page_view", minutes=0, email=None, ids=None, type=LEAD_ACTIVITY):
    at = T0 + timedelta(minutes=minutes)
    return lead_activity(subject, kind, at, email, external_ids=ids, event_type=type)


def outcome(lead_key, status="recycled", minutes=0):
    return sales_outcome(lead_key, status, T0 + timedelta(minutes=minutes))


def fold(*items, tombstones=()):
    rebuild = Rebuild(PLAYBOOK, tombstones=set(tombstones))
    for offset, item in enumerate(items):
        raw = item if isinstance(item, bytes) else item.to_bytes()
        decoded = decode_record(raw)
        event, activity = decoded if decoded else (None, None)
        rebuild.apply(ReplayRecord("t", 0, offset, offset, to_us(T0), event, activity))
    return rebuild


def test_names_met_later_merge_into_the_lead_of_the_best_name():
    rebuild = fold(
        event("segment_anonymous:a1", "pricing_page_view", 0, ids={"segment_anonymous": "a1"}),
        event("hubspot:7", "email_click", 1, ids={"hubspot": "7"}),
        event(
            "email:ana@acme.example",
            "form_submit",
            2,
            email="ana@acme.example",
            ids={"segment_anonymous": "a1", "hubspot": "7"},
        ),
    )
    assert list(rebuild.leads.states) == ["email:ana@acme.example"]
    lead = rebuild.leads.states["email:ana@acme.example"]
    assert lead.events_count == 3
    assert set(rebuild.leads.bindings.values()) == {"email:ana@acme.example"}
    assert set(rebuild.leads.bindings) == {
        "segment_anonymous:a1",
        "hubspot:7",
        "email:ana@acme.example",
    }
    assert rebuild.leads.names_of == {"email:ana@acme.example": set(rebuild.leads.bindings)}


def test_poison_leaves_no_id_and_no_change_and_a_duplicate_counts_once():
    first = event("email:bo@acme.example", "demo_request", email="bo@acme.example")
    again = event("email:bo@acme.example", "demo_request", email="bo@acme.example")
    bad_data = again.to_bytes().replace(b'"demo_request"', b'"Not A Type"')
    unknown = event("email:bo@acme.example", type="leadrouter.lead.unknown")
    # A record with an id already processed is a duplicate, whatever it holds (as live).
    same_id_bad = first.to_bytes().replace(b'"demo_request"', b'"Not A Type"')
    rebuild = fold(first, b"{not json", bad_data, unknown, first, same_id_bad)
    assert rebuild.dead_letters == 3
    assert list(rebuild.processed) == [first.id]
    assert rebuild.leads.states["email:bo@acme.example"].events_count == 1


def test_an_erased_lead_is_gone_and_its_late_outcome_starts_nothing():
    key = "email:cy@acme.example"
    erase = event(key, "erasure_requested", 5, email="cy@acme.example", type=ERASURE_REQUESTED)
    rebuild = fold(event(key, email="cy@acme.example"), erase, outcome(key, minutes=9))
    assert rebuild.leads.states == {} and rebuild.leads.bindings == {}
    assert lead_hash(key) in rebuild.tombstones
    [erasure] = rebuild.erasures
    assert erasure.lead_keys == (key,) and erasure.cause == erase.id
    assert len(rebuild.processed) == 3  # the dropped outcome was still processed


def test_an_outcome_for_a_lead_never_seen_starts_it_unless_it_was_erased_before():
    fresh = fold(outcome("email:di@acme.example"))
    assert fresh.leads.states["email:di@acme.example"].stage == "recycled"
    erased = fold(outcome("email:di@acme.example"), tombstones={lead_hash("email:di@acme.example")})
    assert erased.leads.states == {}


def test_the_decoder_validates_activities_in_one_pass_as_the_two_steps_would():
    activity = event("email:ed@acme.example", "form_submit", email=" Ed@Acme.example ")
    decoded = decode_record(activity.to_bytes())
    assert decoded is not None
    envelope, data = decoded
    assert envelope.id == activity.id and envelope.subject == activity.subject
    assert data == LeadActivityData.model_validate(activity.data)
    assert data.identity.email == "ed@acme.example"
    # Anything else is the plain envelope, its data left to the handler; garbage is None.
    handoff = outcome("email:ed@acme.example")
    assert decode_record(handoff.to_bytes()) == (handoff, None)
    assert decode_record(b"\x00garbage") is None


def test_an_activity_dated_ahead_of_its_arrival_counts_as_live_counts_it():
    # Received at T0 (the record's Kafka time): 3 minutes ahead is believed, 2 hours is not.
    rebuild = fold(
        event("email:sk@acme.example", "page_view", 3, email="sk@acme.example"),
        event("email:fa@acme.example", "demo_request", 120, email="fa@acme.example"),
    )
    for key, minutes in (("email:sk@acme.example", 3), ("email:fa@acme.example", 120)):
        live = event(key, "demo_request" if minutes == 120 else "page_view", minutes)
        data = LeadActivityData.model_validate(live.data)
        expected, _ = apply_activity(LeadState(lead_key=key), data, live.id, PLAYBOOK, T0)
        state = rebuild.leads.states[key]
        assert state.last_activity_at == expected.last_activity_at
        assert (state.score.total, state.stage) == (expected.score.total, expected.stage)
    assert rebuild.leads.states["email:fa@acme.example"].last_activity_at == T0 + timedelta(
        minutes=5
    )


# Up to the last millisecond of the year 9999, the last a datetime holds.
@given(st.one_of(st.none(), st.integers(min_value=-5, max_value=253_402_300_799_999)))
def test_a_records_time_in_microseconds_is_the_instant_live_receives_it_at(timestamp_ms):
    # As live decodes a record's time (shared/consumer.py).
    live = (
        datetime.fromtimestamp(timestamp_ms / 1000, UTC)
        if timestamp_ms is not None and timestamp_ms >= 0
        else None
    )
    assert received_us(timestamp_ms) == (to_us(live) if live is not None else None)


def _aliases_as_written_first(subject, data):
    names = [f"email:{data.identity.email}"] if data.identity.email else []
    names += [f"{system}:{value}" for system, value in sorted(data.identity.external_ids.items())]
    return list(dict.fromkeys([*names, subject]))


@given(
    st.sampled_from(["email:a@acme.example", "hubspot:7", "segment_anonymous:x", "email:b@x.io"]),
    st.sampled_from([None, "a@acme.example", "b@x.io"]),
    st.dictionaries(
        st.sampled_from(["hubspot", "segment_anonymous", "salesforce"]),
        st.sampled_from(["7", "x", "9"]),
        max_size=2,
    ),
)
def test_the_names_of_an_event_are_its_email_its_ids_and_its_subject_once_each(subject, email, ids):
    data = LeadActivityData.model_validate(
        lead_activity(subject, "page_view", T0, email, external_ids=ids).data
    )
    assert identity_aliases(subject, data) == _aliases_as_written_first(subject, data)


NAMES = ["email:a@acme.example", "email:b@acme.example", "hubspot:7", "segment_anonymous:x"]


@given(st.lists(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True), max_size=25))
def test_the_fold_resolves_names_to_the_lead_merged_lead_gives(events):
    leads = LeadsInMemory()
    for names in events:
        keys = {leads.bindings[n] for n in names if n in leads.bindings}
        expected = merged_lead(leads.states, keys, names, PLAYBOOK)
        state, absorbed = leads.resolve(names, PLAYBOOK)
        assert (state, absorbed) == (expected, keys)
        leads.keep(replace(state, events_count=state.events_count + 1), names, absorbed)


def touched(subject, kind, minutes, campaign, email=None, ids=None):
    """An activity that carries a marketing touch."""
    activity = event(subject, kind, minutes, email, ids)
    activity.data["touch"] = {"source": "google", "campaign": campaign}
    return activity


def test_touches_follow_a_merge_qualify_at_the_mql_and_go_with_an_erasure():
    # The story of tests/integration/test_scoring_touches.py, which live stores the same way.
    ana = "email:ana@acme.example"
    story = [
        touched("hubspot:7", "pricing_page_view", 0, "spring-ad", ids={"hubspot": "7"}),
        event(ana, "page_view", 5, email="ana@acme.example", ids={"hubspot": "7"}),
        touched(ana, "demo_request", 10, "retarget", email="ana@acme.example"),
        touched(ana, "email_click", 20, "nurture", email="ana@acme.example"),
    ]
    rebuild = fold(*story)
    assert set(rebuild.touches) == {ana}  # the merged-away lead's touches moved to ana
    touches = rebuild.touches[ana]
    assert touches.first and touches.first["campaign"] == "spring-ad"
    assert touches.qualifying and touches.qualifying["campaign"] == "retarget"
    assert touches.last and touches.last["campaign"] == "nurture"
    erase = event(ana, "erasure_requested", 30, email="ana@acme.example", type=ERASURE_REQUESTED)
    assert fold(*story, erase).touches == {}

