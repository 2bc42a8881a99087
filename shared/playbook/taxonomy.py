"""The shared words: lifecycle stages, the MQL threshold, hot/warm/cold tiers."""

from pydantic import Field, model_validator

from shared.playbook.base import Section


class Tier(Section):
    """A score band: leads at or above `min_score` (and below the next tier) belong to it."""

    name: str
    min_score: int
    definition: str = ""


class Taxonomy(Section):
    """The shared words: when a lead becomes an MQL, and the hot/warm/cold bands."""

    mql_threshold: int = Field(ge=0)
    tiers: list[Tier] = Field(min_length=1)
    definitions: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tiers_descending(self) -> "Taxonomy":
        scores = [t.min_score for t in self.tiers]
        if scores != sorted(scores, reverse=True) or len(set(scores)) != len(scores):
            raise ValueError("tiers must be listed from the highest min_score down, each distinct")
        return self

    def tier_for(self, score: int) -> str:
        """The tier a score falls in (the lowest tier catches everything below it)."""
        for tier in self.tiers:
            if score >= tier.min_score:
                return tier.name
        return self.tiers[-1].name
