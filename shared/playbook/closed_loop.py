"""Closing the loop between sales and marketing: the currency money is reported in, and the
words sales tags what they hear with."""

from pydantic import Field

from shared.playbook.base import Section

CURRENCY_PATTERN = r"^[A-Z]{3}$"
TAG_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
# The kinds of insight sales may tag feedback with (each with the playbook's allowed values).
INSIGHT_KINDS = ("objection", "pain_point", "competitor", "persona")
NOTE_MAX_CHARS_LIMIT = 2000


class InsightTags(Section):
    """The allowed values of each kind of insight tag."""

    objection: list[str] = Field(default_factory=list, description="e.g. price, timing")
    pain_point: list[str] = Field(default_factory=list, description="e.g. manual_reporting")
    competitor: list[str] = Field(default_factory=list, description="e.g. a rival's name")
    persona: list[str] = Field(default_factory=list, description="e.g. head_of_sales")


class ClosedLoop(Section):
    """What sales reports back to marketing, and how it is counted."""

    reporting_currency: str | None = Field(
        None,
        pattern=CURRENCY_PATTERN,
        description="ISO 4217 code for conversion amounts sent without a currency; without it "
        "an amount needs its currency",
    )
    insight_tags: InsightTags = Field(
        default_factory=InsightTags,
        description="The vocabulary of feedback tags (a kind without values takes none)",
    )
    note_max_chars: int = Field(
        280, ge=1, le=NOTE_MAX_CHARS_LIMIT, description="The longest note sales may add"
    )
