"""The backtest's history: every lead activity and handoff event on the topics, decoded.

Reading the topics is shared/history.py's (the replay reads them the same way); this module
turns what it reads into the simulation's events.
"""

import sys
from datetime import datetime
from typing import TextIO

from services.backtest.simulate import HistoryEvent, decode
from shared.history import read_events
from shared.settings import CommonSettings


async def read_history(
    settings: CommonSettings,
    until: datetime | None = None,
    out: TextIO = sys.stderr,
) -> list[HistoryEvent]:
    """Every lead activity and handoff event with event time before `until`, in order.

    Events before the report's window are kept: they are the leads' history when the
    window opens (a lead that scored 40 last month needs only 10 more points this month).
    """
    history = decode(await read_events(settings, out))
    return [e for e in history if until is None or e.at < until]
