"""How the leads projection stores a lead's behaviour record: its JSON form in the row.

The row is read and written with every event, so the record is kept compact: awards go column
by column, and the cap periods a tally archives (rarely opened: only a late activity for one
needs them) go as one compressed text per rule, opened only when the core asks for them.
Decoding also reads the forms older rows hold.
"""

import base64
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from services.scoring.core.records import Award, Behaviour, CapPeriod, PackedPeriods, RuleTally
from shared import jsoncodec


@dataclass(frozen=True, slots=True)
class SealedArchive:
    """A tally's archived cap periods as the row holds them, opened only when needed."""

    text: str

    def unpacked(self) -> tuple[CapPeriod, ...]:
        """The cap periods, oldest first."""
        return tuple(
            (period, tuple((at_us, event_id, points) for at_us, event_id, points in awards))
            for period, awards in orjson.loads(zlib.decompress(base64.b64decode(self.text)))
        )


def seal_archive(archive: tuple[CapPeriod, ...] | PackedPeriods) -> str:
    """Cap periods as one text: compressed JSON in base64, which JSON carries without escapes.

    An archive read from a row and never opened goes back as the text it was read as.
    """
    if isinstance(archive, SealedArchive):
        return archive.text
    if not archive:
        return ""
    return base64.b64encode(zlib.compress(orjson.dumps(archive))).decode("ascii")


def pack(awards: Iterable[Award]) -> str:
    """A cap period's awards as compact JSON text (the form rows before the archive kept)."""
    return jsoncodec.dumps(list(awards))


def unpack(packed: str) -> tuple[Award, ...]:
    """A cap period's awards from their JSON text, in event-time order."""
    return tuple((at_us, event_id, points) for at_us, event_id, points in jsoncodec.loads(packed))


def encode_behaviour(behaviour: Behaviour) -> dict[str, Any]:
    """The JSON form of a lead's behaviour record.

    Awards go column by column (times, event ids, points), a few arrays instead of one per
    award: the record is read and written with every event.
    """
    return {
        "tallies": {
            rule: [
                t.settled,
                t.open,
                t.as_of_us,
                t.settled_through,
                [[period, *_columns(awards, 3)] for period, awards in t.periods],
                seal_archive(t.archive),
                t.archive_through,
            ]
            for rule, t in behaviour.tallies.items()
        },
        "recent_columns": _columns(behaviour.recent, 4),
        "origins": sorted(behaviour.origins),
    }


def _columns(rows: tuple[tuple[Any, ...], ...], width: int) -> list[Any]:
    return list(zip(*rows, strict=True)) if rows else [()] * width


def decode_behaviour(doc: dict[str, Any]) -> Behaviour:
    """A behaviour record from its JSON form (also from the forms older rows hold)."""
    tallies = {}
    for rule, (settled, open_points, as_of_us, through, periods, *archived) in doc.get(
        "tallies", {}
    ).items():
        sealed, archive_through = archived or ("", None)
        tallies[rule] = RuleTally(
            settled,
            open_points,
            as_of_us,
            tuple(_period(period, columns) for period, *columns in periods),
            through,
            SealedArchive(sealed) if sealed else (),
            archive_through,
        )
    if "recent_columns" in doc:
        recent = tuple(zip(*doc["recent_columns"], strict=True))
    else:  # rows written before the columns: one array per award
        recent = tuple(map(tuple, doc.get("recent", ())))
    return Behaviour(tallies, recent, frozenset(doc.get("origins", ())))  # type: ignore[arg-type]


def _period(period: int, columns: list[Any]) -> tuple[int, tuple[Any, ...]]:
    if len(columns) == 3:
        return period, tuple(zip(*columns, strict=True))
    (awards,) = columns  # older rows: one array per award, or before that JSON text
    return period, unpack(awards) if isinstance(awards, str) else tuple(map(tuple, awards))
