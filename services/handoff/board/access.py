"""Who is looking at the board: the scopes of the API key the page sends.

The page keeps the key in sessionStorage and sends it as `Authorization: Bearer` with
every request (fragments, the live feed and the actions, which are the API's own
endpoints). Fragments render action buttons only for scopes that may use them.
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

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
    """The viewer of a board request.

    The handoff API does not check keys yet (no shared/auth.py on main), so it is open and
    the board with it: every viewer holds every scope. When API keys arrive, this is the
    one place that resolves the bearer key to its scopes (401/403 as the API answers).
    """
    return Viewer(EVERY_SCOPE)


BoardViewer = Annotated[Viewer, Depends(board_viewer)]
