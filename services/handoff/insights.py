"""Pure: sales insights. Tags from the playbook's vocabulary and a short note, checked as
feedback comes in; tag counts per campaign (credited like the funnel's breakdown) or per
routing rule, for marketing to read."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from services.handoff.attribution import AttributionModel
from services.handoff.breakdown import GroupBy, Touches, shares
from services.handoff.lifecycle import InvalidFeedback
from shared.playbook import Playbook
from shared.playbook.closed_loop import INSIGHT_KINDS

# How many of a group's latest notes the summary shows.
NOTES_SHOWN = 3


@dataclass(frozen=True)
class Insight:
    """What sales heard, checked: tags by kind and a note."""

    tags: dict[str, list[str]]
    note: str | None

    @property
    def empty(self) -> bool:
        """Nothing to tell marketing."""
        return not self.tags and not self.note


def check_insight(
    tags: Mapping[str, list[str]] | None, note: str | None, playbook: Playbook
) -> Insight:
    """The feedback's tags and note, or InvalidFeedback naming the tag or note that is not
    allowed (an unknown kind or value, a note too long)."""
    vocabulary = playbook.closed_loop.insight_tags
    checked: dict[str, list[str]] = {}
    for kind, values in (tags or {}).items():
        if kind not in INSIGHT_KINDS:
            raise InvalidFeedback(f"tag kinds are {list(INSIGHT_KINDS)}", pointer=f"/tags/{kind}")
        allowed = getattr(vocabulary, kind)
        for i, value in enumerate(values):
            if value not in allowed:
                raise InvalidFeedback(
                    f"{kind} must be one of {allowed}", pointer=f"/tags/{kind}/{i}"
                )
        if values:
            checked[kind] = list(dict.fromkeys(values))
    text = note.strip() if note else None
    limit = playbook.closed_loop.note_max_chars
    if text and len(text) > limit:
        raise InvalidFeedback(f"a note has at most {limit} characters", pointer="/note")
    return Insight(checked, text or None)


@dataclass(frozen=True)
class InsightRow:
    """A stored insight, with its handoff's touches, rule and tier."""

    touches: Touches
    routing_rule: str | None
    tier: str | None
    tags: Mapping[str, list[str]]
    note: str | None
    at: datetime


def summarise(
    rows: Iterable[InsightRow], group_by: GroupBy, model: AttributionModel
) -> list[dict[str, Any]]:
    """Per group: insights counted (credited), each tag's count, and the latest notes."""
    groups: dict[str | None, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r.at, reverse=True):
        for key, share in shares(group_by, model, row.touches, row.routing_rule, row.tier):
            g = groups.setdefault(
                key, {"key": key, "insights": Fraction(0), "tags": {}, "notes": []}
            )
            g["insights"] += share
            for kind, values in row.tags.items():
                counts = g["tags"].setdefault(kind, {})
                for value in values:
                    counts[value] = counts.get(value, Fraction(0)) + share
            if row.note and len(g["notes"]) < NOTES_SHOWN:
                g["notes"].append(row.note)
    out = []
    for g in sorted(
        groups.values(), key=lambda g: (g["key"] is None, -g["insights"], g["key"] or "")
    ):
        out.append(
            {
                "key": g["key"],
                "insights": round(float(g["insights"]), 4),
                "tags": {
                    kind: {
                        v: round(float(n), 4)
                        for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                    }
                    for kind, counts in sorted(g["tags"].items())
                },
                "latest_notes": g["notes"],
            }
        )
    return out
