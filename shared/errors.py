"""The one root of the errors leadrouter raises on purpose.

Every `LeadrouterError` carries its HTTP status and problem type, so the app factory maps
all of them once (RFC 9457 problem+json) and handlers never translate errors themselves.
`retryable` tells loops (consumer, timers, outbox) whether trying again can help: anything
that is not retryable is dead-lettered or parked at once.
"""

from http import HTTPStatus
from typing import Any

from pydantic import ValidationError


class LeadrouterError(Exception):
    """An error with an HTTP status, a problem type and, where it applies, the offending field.

    Subclasses name the status; `status=` overrides it for a one-off refusal at the door.
    """

    status: int = 500
    problem_type: str = "about:blank"
    retryable: bool = False

    def __init_subclass__(
        cls, *, status: int | None = None, retryable: bool | None = None, **kwargs: Any
    ) -> None:
        """`class NotFound(LeadrouterError, status=404)`: a subclass names its status inline."""
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status
        if retryable is not None:
            cls.retryable = retryable

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        pointer: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail)
        if status is not None:
            self.status = status
            self.retryable = status in (429, 503)
        self.detail = detail
        if errors is None and pointer is not None:
            errors = [{"pointer": pointer, "detail": detail}]
        self.errors = errors
        self.headers = headers
        self.title = title or HTTPStatus(self.status).phrase


class BadRequest(LeadrouterError, status=400):
    """A request that cannot be read at all (malformed JSON, a broken envelope)."""


class Unauthorized(LeadrouterError, status=401):
    """No credentials, or credentials nobody issued."""


class Forbidden(LeadrouterError, status=403):
    """Credentials without the right to do this."""


class NotFound(LeadrouterError, status=404):
    """Nothing has this id."""


class Conflict(LeadrouterError, status=409):
    """Not possible in the current state of the thing it applies to."""


class TooLarge(LeadrouterError, status=413):
    """A body or a part of it over the limit."""


class UnsupportedMediaType(LeadrouterError, status=415):
    """A body in a content type the endpoint does not take."""


class Invalid(LeadrouterError, status=422):
    """Input that can never be processed as it is (validation, unknown type, domain refusal)."""


class RateLimited(LeadrouterError, status=429, retryable=True):
    """Too many requests for now; the same request may succeed later."""


class Unavailable(LeadrouterError, status=503, retryable=True):
    """A dependency (Kafka, PostgreSQL) did not answer in time; the same request may succeed."""


def is_retryable(exc: BaseException) -> bool:
    """Whether trying the same work again can succeed (unknown exceptions: assume so).

    Data that fails its schema (pydantic's ValidationError) fails the same way every time.
    """
    if isinstance(exc, LeadrouterError):
        return exc.retryable
    return not isinstance(exc, ValidationError)
