"""The door's body check with the raw bytes (its fast path for clean bodies) finds exactly what
the full walk finds, for any JSON body and any of the encodings json.loads reads."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.limits import Limits, body_problems

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
    st.integers(),
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
def test_the_fast_path_finds_what_the_full_walk_finds(body, ensure_ascii, encoding):
    raw = json.dumps(body, ensure_ascii=ensure_ascii).encode(encoding, "surrogatepass")
    parsed = json.loads(raw)
    assert body_problems(parsed, LIMITS, raw=raw) == body_problems(parsed, LIMITS)


def test_a_nul_escape_in_a_utf16_body_is_still_refused():
    raw = json.dumps({"a": "x\x00"}).encode("utf-16")
    problems = body_problems(json.loads(raw), LIMITS, raw=raw)
    assert [p.pointer for p in problems] == ["/a"]


def test_a_lone_surrogate_sent_as_raw_bytes_is_still_refused():
    raw = b'{"ok": "\xed\x95\x9c", "a": "\xed\xa0\x80"}'  # a Korean character, then U+D800
    problems = body_problems(json.loads(raw), LIMITS, raw=raw)
    assert [p.pointer for p in problems] == ["/a"]
