"""Routing: teams and their reps."""

from pydantic import Field

from shared.playbook.base import Section


class Rep(Section):
    """A sales rep who can receive handoffs."""

    id: str
    name: str
    email: str | None = None
    weight: int = Field(1, ge=1)


class Team(Section):
    name: str
    reps: list[Rep] = Field(min_length=1)


class Routing(Section):
    teams: list[Team] = Field(min_length=1)
