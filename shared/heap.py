"""The garbage collector held off while a consumer batch is in hand (beside `settled_heap`).

A batch of 500 events holds tens of thousands of young objects (decoded events, states, rows)
until it commits, and frees nearly all of them by reference counting when it ends. Collected
every 10,000 allocations (`shared.runtime.settled_heap`), the collector walked those live
objects several times per batch and found nothing to free: 18-30 µs of scoring's ~130 µs CPU
per event (gc.callbacks, 15,000 events). Paused for the batch, it next walks only what the
batch kept; a pause does not outlast one attempt at a batch, so a retry loop (a database
outage) collects as usual.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_paused = 0  # batches in hand (partitions run side by side)
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection until the outermost of these ends (then as it was before)."""
    global _paused, _was_enabled
    if _paused == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _paused += 1
    try:
        yield
    finally:
        _paused -= 1
        if _paused == 0 and _was_enabled:
            gc.enable()
