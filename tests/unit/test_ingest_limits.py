"""The door's JSON reading (orjson first, json for what orjson refuses) gives the body json
gives and finds exactly what the full walk finds, for any JSON body and any of the encodings
json.loads reads."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.limits import Limits, body_problems, parse_json

LIMITS = Limits(max_json_depth=6)

text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\ud800", "\udfff", "한", "\\", "u", "d"]),
    ),
    max_size=8,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # past 64 bits too: orjson would make them floats
    st.integers(min_value=2**63 - 10, max_value=2**64 + 10),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
bodies = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(body=bodies, ensure_ascii=st.booleans(), encoding=st.sampled_from(["utf-8", "utf-16"]))
def test_the_fast_path_reads_and_finds_what_json_and_the_full_walk_do(body, ensure_ascii, encoding):
    raw = json.dumps(body, ensure_ascii=ensure_ascii).encode(encoding, "surrogatepass")
    parsed = json.loads(raw)
    read, problems = parse_json(raw, LIMITS)
    # Same values and types (NaN is not equal to itself: compare the repr).
    assert repr(read) == repr(parsed)
    assert problems == body_problems(parsed, LIMITS)


def test_a_nul_escape_in_a_utf16_body_is_still_refused():
    raw = json.dumps({"a": "x\x00"}).encode("utf-16")
    assert [p.pointer for p in parse_json(raw, LIMITS)[1]] == ["/a"]


def test_a_nul_escape_in_a_utf8_body_is_refused():
    assert [p.pointer for p in parse_json(b'{"ok": 1, "a": ["\\u0000"]}', LIMITS)[1]] == ["/a/0"]


def test_a_lone_surrogate_sent_as_raw_bytes_is_still_refused():
    raw = b'{"ok": "\xed\x95\x9c", "a": "\xed\xa0\x80"}'  # a Korean character, then U+D800
    assert [p.pointer for p in parse_json(raw, LIMITS)[1]] == ["/a"]


def test_too_deep_by_one_is_refused_and_at_the_limit_is_not():
    at_limit = "[" * LIMITS.max_json_depth + "]" * LIMITS.max_json_depth
    assert parse_json(at_limit.encode(), LIMITS)[1] == []
    deeper = "[" * (LIMITS.max_json_depth + 1) + "]" * (LIMITS.max_json_depth + 1)
    assert [p.detail for p in parse_json(deeper.encode(), LIMITS)[1]] == [
        f"JSON nested deeper than {LIMITS.max_json_depth} levels"
    ]


def test_a_large_integer_keeps_every_digit():
    assert parse_json(b'{"n": 123456789012345678901234567890}', LIMITS)[0] == {
        "n": 123456789012345678901234567890
    }
