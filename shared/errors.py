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


class BadRequest(LeadrouterError):
    status = 400


class Unauthorized(LeadrouterError):
    status = 401


class Forbidden(LeadrouterError):
    status = 403


class NotFound(LeadrouterError):
    status = 404


class Conflict(LeadrouterError):
    status = 409


class TooLarge(LeadrouterError):
    status = 413


class UnsupportedMediaType(LeadrouterError):
    status = 415


class Invalid(LeadrouterError):
    """Input that can never be processed as it is (validation, unknown type, domain refusal)."""

    status = 422


class RateLimited(LeadrouterError):
    status = 429
    retryable = True


class Unavailable(LeadrouterError):
    """A dependency (Kafka, PostgreSQL) did not answer in time; the same request may succeed."""

    status = 503
    retryable = True


def is_retryable(exc: BaseException) -> bool:
    """Whether trying the same work again can succeed (unknown exceptions: assume so).

    Data that fails its schema (pydantic's ValidationError) fails the same way every time.
    """
    if isinstance(exc, LeadrouterError):
        return exc.retryable
    return not isinstance(exc, ValidationError)
