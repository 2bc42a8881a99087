"""Which failures are retried, waited out, or set aside at once (consumer, outbox, timers)."""

import asyncpg
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
)
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError

from shared.consumer import _is_transient
from shared.errors import Invalid, NotFound, Unavailable, is_retryable
from shared.outbox import is_permanent_publish_error


class Needs(BaseModel):
    n: int


def validation_error() -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Needs.model_validate({"n": "x"})
    return caught.value


def test_errors_that_retrying_cannot_fix_are_not_retryable():
    assert not is_retryable(Invalid("unknown event type"))
    assert not is_retryable(NotFound("no such handoff"))
    assert not is_retryable(validation_error())
    assert is_retryable(Unavailable("kafka"))
    assert is_retryable(KeyError("a bug, maybe transient"))


@pytest.mark.parametrize(
    "orig",
    [
        asyncpg.exceptions.ConnectionDoesNotExistError(
            "connection was closed in the middle of operation"
        ),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    ],
)
def test_a_database_going_away_is_transient_not_the_records_fault(orig):
    wrapped = DBAPIError("select 1", {}, orig)
    wrapped.orig = type("AdaptedError", (Exception,), {"sqlstate": orig.sqlstate})()
    wrapped.orig.__cause__ = orig
    assert _is_transient(wrapped)


def test_a_constraint_violation_is_the_records_fault():
    orig = asyncpg.exceptions.UniqueViolationError("duplicate key")
    assert not _is_transient(IntegrityError("insert", {}, orig))


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (MessageSizeTooLargeError("1100556 bytes"), True),
        (TopicAuthorizationFailedError(), True),
        (TypeError("value must be bytes"), True),
        (KafkaConnectionError("broker down"), False),
        (KafkaTimeoutError(), False),
        (NotLeaderForPartitionError(), False),
    ],
)
def test_publish_failures_are_told_apart_by_aiokafka_error_class(error, permanent):
    assert is_permanent_publish_error(error) is permanent
