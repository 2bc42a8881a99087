"""Who is looking at the board: the scopes of the API key the page sends.

The page keeps the key in sessionStorage and sends it as `Authorization: Bearer` with
every request (fragments, the live feed and the actions, which are the API's own
endpoints). Fragments render action buttons only for scopes that may use them.
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from shared.errors import Forbidden

HANDOFFS_READ = "handoffs:read"
LEADS_READ = "leads:read"
FEEDBACK_WRITE = "feedback:write"
REPS_WRITE = "reps:write"
ADMIN = "admin"
EVERY_SCOPE = frozenset({HANDOFFS_READ, LEADS_READ, FEEDBACK_WRITE, REPS_WRITE, ADMIN})


@dataclass(frozen=True)
class Viewer:
    """The scopes a board request carries."""

    scopes: frozenset[str]

    @property
    def may_give_feedback(self) -> bool:
        return bool(self.scopes & {FEEDBACK_WRITE, ADMIN})

    @property
    def may_set_availability(self) -> bool:
        return bool(self.scopes & {REPS_WRITE, ADMIN})


class BoardAccess:
    """A board route's security: 401 without a known key, 403 without each of `scopes`.

    Keys are checked by the service's authenticator (`app.state.authenticator`, from
    shared/auth.py: `principal(bearer)` gives the key's name and scopes), the same one the
    API's routes use. A service without one does not check keys at all, so the board is as
    open as the API: every viewer holds every scope. The board's routes are outside the
    OpenAPI documents: tests/unit/test_board_scopes.py finds each route's `scopes` here.
    """

    def __init__(self, *scopes: str) -> None:
        self.scopes = scopes

    async def __call__(self, request: Request) -> Viewer:
        authenticator = getattr(request.app.state, "authenticator", None)
        if authenticator is None:
            return Viewer(EVERY_SCOPE)
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        principal = authenticator.principal(bearer if scheme.lower() == "bearer" else None)
        scopes = frozenset(principal.scopes)
        for scope in self.scopes:
            if not scopes & {scope, ADMIN}:
                raise Forbidden(f"the key lacks the scope {scope}")
        return Viewer(scopes)


board_viewer = BoardAccess(HANDOFFS_READ)
"""The viewer of a board request: 403 without handoffs:read."""

BoardViewer = Annotated[Viewer, Depends(board_viewer)]
# A lead's page shows her score and stage transitions: as scoring's GET /v1/leads/{id}, it
# needs leads:read (besides the board's handoffs:read, for her handoffs).
LeadViewer = Annotated[Viewer, Depends(BoardAccess(HANDOFFS_READ, LEADS_READ))]
