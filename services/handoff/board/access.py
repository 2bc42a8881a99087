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
FEEDBACK_WRITE = "feedback:write"
REPS_WRITE = "reps:write"
ADMIN = "admin"
EVERY_SCOPE = frozenset({HANDOFFS_READ, FEEDBACK_WRITE, REPS_WRITE, ADMIN})


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


async def board_viewer(request: Request) -> Viewer:
    """The viewer of a board request: 401 without a known key, 403 without handoffs:read.

    Keys are checked by the service's authenticator (`app.state.authenticator`, from
    shared/auth.py: `principal(bearer)` gives the key's name and scopes), the same one the
    API's routes use. A service without one does not check keys at all, so the board is as
    open as the API: every viewer holds every scope.
    """
    authenticator = getattr(request.app.state, "authenticator", None)
    if authenticator is None:
        return Viewer(EVERY_SCOPE)
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    principal = authenticator.principal(bearer if scheme.lower() == "bearer" else None)
    scopes = frozenset(principal.scopes)
    if not scopes & {HANDOFFS_READ, ADMIN}:
        raise Forbidden(f"the key lacks the scope {HANDOFFS_READ}")
    return Viewer(scopes)


BoardViewer = Annotated[Viewer, Depends(board_viewer)]
