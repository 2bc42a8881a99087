"""Scoring rules: points per activity (fit rules and decay come with the scoring issue)."""

from pydantic import Field

from shared.playbook.base import Section


class BehaviourRule(Section):
    """Points a lead earns each time it does an activity of this type."""

    activity: str
    points: int


class Scoring(Section):
    behaviour: list[BehaviourRule] = Field(default_factory=list)
