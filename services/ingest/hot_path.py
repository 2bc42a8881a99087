"""POST /v1/events answered by a plain ASGI layer in front of the framework.

The busiest route's own work is small beside FastAPI's per request (routing through every
route, solving the security dependency, the exception and telemetry layers): about half of
ingest's CPU for a one-event request. This layer takes the usual request (POST to exactly
/v1/events, no query string, no bearer JWT) and does what the route does with the same
functions: the same admission (shared.auth.admit, counted the same), the same service call,
the same problem+json errors. Everything else goes on to the app, whose route
(endpoints.post_events) stays the documented one and serves the rest, JWTs included (their
key set may be fetched over the network, off the event loop).
"""

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from services.ingest.service import IngestService
from shared.auth import EVENTS_WRITE, Authenticator, admit, bearer_of, looks_like_jwt
from shared.errors import LeadrouterError
from shared.http import model_response, problem_response

log = logging.getLogger(__name__)

PATH = "/v1/events"
SCOPES = (EVENTS_WRITE,)


class NativeEventsHotPath:
    """ASGI middleware: POST /v1/events without the framework's routing and dependencies."""

    def __init__(self, app: ASGIApp, ingest: IngestService, authenticator: Authenticator) -> None:
        self.app = app
        self.ingest = ingest
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("query_string")
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        bearer = bearer_of(authorization)
        if bearer and self.authenticator.jwt and looks_like_jwt(bearer):
            await self.app(scope, receive, send)
            return
        response: Response
        try:
            principal = admit(self.authenticator, bearer, SCOPES)
            # The key's name is the source; without a key file (development) it is "api".
            source = "api" if principal.anonymous else principal.name
            result = await self.ingest.native(Request(scope, receive), source)
            response = model_response(result, 202)
        except LeadrouterError as error:
            response = problem_response(error, PATH)
        except Exception as exc:  # as the app factory's handler of the unexpected answers
            log.error("unexpected error on POST %s", PATH, exc_info=exc)
            unexpected = LeadrouterError(
                "unexpected error; the service log has the details", status=500
            )
            response = problem_response(unexpected, PATH)
        await response(scope, receive, send)
