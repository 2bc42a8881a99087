"""The shared words: lifecycle stages, the MQL threshold, hot/warm/cold tiers."""

from typing import Annotated

from pydantic import Field, model_validator

from shared.playbook.base import Section
from shared.playbook.qualification import Qualification
from shared.vocabulary import LEAD_STAGES

# The lifecycle every team uses, in funnel order; `recycled` and `disqualified` sit beside it
# (the words are shared/vocabulary.py's).
STAGES = tuple(s.value for s in LEAD_STAGES)


class Tier(Section):
    """A score band: leads at or above `min_score` (and below the next tier) belong to it."""

    name: str
    min_score: int
    definition: str = ""


class Taxonomy(Section):
    """The shared words: stage definitions, when a lead becomes an MQL, the score tiers."""

    mql_threshold: int = Field(ge=0)
    tiers: list[Tier] = Field(min_length=1)
    stages: dict[str, str] = Field(
        default_factory=dict, description="Plain-language definition of each lifecycle stage"
    )
    qualification: Qualification = Field(
        default_factory=Qualification,
        description="Fit and engagement floors an MQL needs besides the threshold",
    )
    signals: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]] = Field(
        default_factory=list,
        description="Activity types that are sales signals: one by an mql (or later) lead "
        "reaches the rep of its open handoff as a `signal` event",
    )

    @model_validator(mode="after")
    def _valid(self) -> "Taxonomy":
        scores = [t.min_score for t in self.tiers]
        if scores != sorted(scores, reverse=True) or len(set(scores)) != len(scores):
            raise ValueError("tiers must be listed from the highest min_score down, each distinct")
        unknown = sorted(set(self.stages) - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stages {unknown}; the stages are {list(STAGES)}")
        if len(set(self.signals)) != len(self.signals):
            raise ValueError(f"signals must be distinct; got {self.signals}")
        return self

    def tier_for(self, score: float) -> str:
        """The tier a score falls in (the lowest tier catches everything below it)."""
        for tier in self.tiers:
            if score >= tier.min_score:
                return tier.name
        return self.tiers[-1].name

    def band(self, tier: str) -> tuple[float, float]:
        """The [low, high) score band of a tier; the lowest tier reaches down without end."""
        names = [t.name for t in self.tiers]
        i = names.index(tier)
        high = float("inf") if i == 0 else float(self.tiers[i - 1].min_score)
        low = float("-inf") if i == len(names) - 1 else float(self.tiers[i].min_score)
        return low, high
