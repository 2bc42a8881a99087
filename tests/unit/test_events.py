"""Event decoding: the fast email check agrees with pydantic's EmailStr."""

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic.networks import validate_email

from shared.events import EVENT_ID_NAMESPACE, PLAIN_EMAIL, Identity, _valid_email, derived_event_id


@given(st.from_regex(PLAIN_EMAIL, fullmatch=True))
def test_an_everyday_address_is_accepted_exactly_as_email_validator_accepts_it(address):
    try:
        expected = validate_email(address)[1]
    except Exception:
        # email-validator refuses it: the fast check must refuse it too.
        with pytest.raises(ValueError):
            _valid_email(address)
        return
    assert _valid_email(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "ana@localhost",
        "ana@shop.test",
        "ana@printer.local",
        "a..b@acme.example",
        ".ana@acme.example",
        "ana@-acme.example",
        "ana@acme",
        f"ana@{'a' * 64}.example",
        "ana@acme.123",
    ],
)
def test_an_address_email_validator_refuses_is_refused(address):
    with pytest.raises(ValidationError):
        Identity(email=address)


def test_an_address_outside_the_everyday_shape_still_gets_the_full_check():
    assert Identity(email="Ana.Pérez@Acme.Example").email == "ana.pérez@acme.example"


@given(st.lists(st.text(), min_size=1, max_size=5))
def test_a_derived_event_id_is_the_uuid5_of_its_parts(parts):
    expected = uuid.uuid5(EVENT_ID_NAMESPACE, "\x1f".join(parts))
    assert derived_event_id(*parts) == str(expected)
