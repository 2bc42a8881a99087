"""Reads a lead from scoring's HTTP API (LEADROUTER_SCORING_URL) for the board's lead view.

Through the API rather than scoring's tables: the score "now" (with decay) and its
explanation are computed by scoring's own core, and the viewer's key is forwarded so
scoring's access rules apply to what the board shows.
"""

from typing import Any
from urllib.parse import quote

import httpx

TIMEOUT_S = 5.0


class ScoringUnavailable(Exception):
    """Scoring did not answer (down, or not at the configured URL)."""


async def fetch_lead(
    scoring_url: str, lead_id: str, authorization: str | None
) -> dict[str, Any] | None:
    """The lead as scoring shows it, or None when scoring knows no such lead."""
    headers = {"authorization": authorization} if authorization else {}
    url = f"{scoring_url.rstrip('/')}/v1/leads/{quote(lead_id, safe='')}"
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise ScoringUnavailable(f"scoring did not answer at {scoring_url}") from exc
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        detail = response.json().get("detail", "") if response.content else ""
        raise ScoringUnavailable(f"scoring answered {response.status_code} {detail}".strip())
    lead: dict[str, Any] = response.json()
    return lead
