"""The audit trail: every change made through the API or a sales-feedback event, who made it, when.

`who` is the API key's name (`anonymous` in development), `kafka:<source>` for feedback that
came over Kafka, `cli:<user>` for operator commands. Targets are handoff ids, rep ids and
erasure ids, never emails: the trail itself holds no personal data to erase.
"""

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Table,
    Text,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Admin
from shared.db import metadata
from shared.http import ReadSession
from shared.strict import Instant

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("detail", JSONB, nullable=False, server_default="{}"),
)
Index("audit_log_at", audit_log.c.at)


async def record(
    session: AsyncSession,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an entry in the caller's transaction (it is kept only if the change is)."""
    await session.execute(
        insert(audit_log).values(actor=actor, action=action, target=target, detail=detail or {})
    )


class AuditEntry(BaseModel):
    """One change: who made it, what it was, on what, and when."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


async def entries(
    session: AsyncSession,
    since: datetime | None,
    actor: str | None,
    action: str | None,
    limit: int,
) -> list[AuditEntry]:
    """The newest entries first, optionally since a time, by one actor or of one action."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    if actor is not None:
        query = query.where(audit_log.c.actor == actor)
    if action is not None:
        query = query.where(audit_log.c.action == action)
    return [AuditEntry.model_validate(row._asdict()) for row in await session.execute(query)]


router = APIRouter(prefix="/v1/audit", tags=["audit"])
_PROBLEM = {"content": {"application/problem+json": {"schema": {"type": "object"}}}}


@router.get(
    "",
    summary="The audit trail, newest first (admin)",
    response_model=list[AuditEntry],
    responses={
        401: {"description": "No or unknown credential", **_PROBLEM},
        403: {"description": "The credential lacks the scope admin", **_PROBLEM},
        422: {"description": "A parameter is not valid (the problem's errors name it)", **_PROBLEM},
    },
)
async def list_audit(
    principal: Admin,
    session: ReadSession,
    since: Instant | None = None,
    actor: str | None = None,
    action: str | None = Query(None, description="e.g. feedback.accept, rep.availability"),
    limit: int = Query(100, ge=1, le=1000),
) -> list[AuditEntry]:
    return await entries(session, since, actor, action, limit)
