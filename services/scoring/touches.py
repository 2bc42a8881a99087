"""Pure: a lead's first, qualifying and last touch, folded from its activities' touches.

The first touch is the earliest by activity time, unless a platform names the lead's original
source (`Touch.original`, HubSpot's hs_analytics_source...): that is the first touch whenever
it arrives, its fields filled in as their events come. The last touch is the latest by
activity time; the qualifying touch is the last touch when the lead became an MQL. Ties in
time are broken by the touch's values, so arrival order does not change first or last.
"""

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.events import TOUCH_FIELDS, Touch

# A touch as stored and published: its fields, `original`, and `at` (ISO 8601).
TouchDoc = dict[str, Any]


@dataclass(frozen=True)
class LeadTouches:
    """Where one lead came from."""

    first: TouchDoc | None = None
    qualifying: TouchDoc | None = None
    last: TouchDoc | None = None

    def as_dict(self) -> dict[str, TouchDoc | None]:
        """The lifecycle event's `touches`."""
        return {"first": self.first, "qualifying": self.qualifying, "last": self.last}

    @property
    def empty(self) -> bool:
        """No touch at all."""
        return self.first is None and self.last is None


def touch_doc(touch: Touch, at: datetime) -> TouchDoc:
    """A touch with the time of the activity that carried it."""
    return {**touch.model_dump(exclude_none=True), "at": at.isoformat()}


def _order(doc: TouchDoc) -> tuple[datetime, tuple[str, ...]]:
    return datetime.fromisoformat(doc["at"]), tuple(str(doc.get(f) or "") for f in TOUCH_FIELDS)


def add_touch(current: LeadTouches, touch: Touch | None, at: datetime) -> LeadTouches:
    """The lead's touches after an activity at `at` that carried `touch` (or none)."""
    if touch is None:
        return current
    doc = touch_doc(touch, at)
    first = current.first
    if touch.original:
        if first is not None and first.get("original"):
            # Field by field: the original source's later events fill and update it.
            newer = _order(doc) >= _order(first)
            fields = {f: first[f] for f in TOUCH_FIELDS if f in first}
            for f in TOUCH_FIELDS:
                if f in doc and (newer or f not in fields):
                    fields[f] = doc[f]
            earliest = min(first["at"], doc["at"], key=datetime.fromisoformat)
            first = {**fields, "original": True, "at": earliest}
        else:
            first = doc
        return replace(current, first=first)
    if first is None or (not first.get("original") and _order(doc) < _order(first)):
        first = doc
    last = current.last
    if last is None or _order(doc) >= _order(last):
        last = doc
    return replace(current, first=first, last=last)


def qualify(current: LeadTouches) -> LeadTouches:
    """The lead became an MQL: its last touch (else its first) is the one that qualified it."""
    return replace(current, qualifying=current.last or current.first)


def merge_touches(kept: LeadTouches, *others: LeadTouches) -> LeadTouches:
    """The touches of leads that turned out to be one person: the earliest first touch (an
    original one before any other), the latest last touch, the kept lead's qualifying touch
    (else the earliest of the others')."""
    every = [kept, *others]
    firsts = [t.first for t in every if t.first]
    originals = [f for f in firsts if f.get("original")]
    first = min(originals or firsts, key=_order, default=None)
    last = max((t.last for t in every if t.last), key=_order, default=None)
    qualifying = kept.qualifying or min(
        (t.qualifying for t in others if t.qualifying), key=_order, default=None
    )
    return LeadTouches(first, qualifying, last)
