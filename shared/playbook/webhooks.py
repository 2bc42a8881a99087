"""Outbound webhooks: which handoff events each subscriber gets, where, and in what format.

Subscriptions live in the playbook, next to the teams and SLAs they refer to: sales-ops
review them like any routing change, `leadrouter playbook check` validates them, and no
admin API or extra state needs securing. Secrets never go in the playbook: each
subscription's signing secret comes from `LEADROUTER_WEBHOOK_<NAME>_SECRET` (or `..._FILE`).
"""

from typing import Literal

from pydantic import Field, HttpUrl, field_validator

from shared.events import HANDOFF_KINDS
from shared.playbook.base import Section

# Retries with exponential backoff over about 21 hours (Standard Webhooks suggests hours):
# 10 s, 40 s, 2.7 min, 11 min, 43 min, 2.9 h, 6 h, 11 h; then the delivery is dead.
DEFAULT_RETRY_SCHEDULE_S = (10.0, 40.0, 160.0, 640.0, 2560.0, 10240.0, 21600.0, 40000.0)


class WebhookSubscription(Section):
    """One outbound webhook subscriber."""

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_-]{0,40}$", description="Names the secret and metrics"
    )
    url: HttpUrl
    events: list[str] = Field(
        min_length=1, description="Handoff kinds, e.g. assigned, sla_breached"
    )
    teams: list[str] | None = Field(None, description="Only handoffs of these teams (None: all)")
    tiers: list[str] | None = Field(None, description="Only leads of these tiers (None: all)")
    format: Literal["cloudevents", "slack"] = "cloudevents"
    timeout_s: float = Field(10.0, gt=0, le=60)
    retry_schedule_s: tuple[float, ...] = Field(
        DEFAULT_RETRY_SCHEDULE_S, min_length=1, description="Waits between tries; then dead"
    )

    @field_validator("events")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(HANDOFF_KINDS))
        if unknown:
            raise ValueError(f"unknown handoff events {unknown}; use {list(HANDOFF_KINDS)}")
        return value

    @property
    def secret_variable(self) -> str:
        """The environment variable that holds this subscription's signing secret."""
        return f"LEADROUTER_WEBHOOK_{self.name.upper().replace('-', '_')}_SECRET"
