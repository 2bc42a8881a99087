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
import time
from collections.abc import Iterator
from contextlib import contextmanager

_paused = 0  # batches in hand (partitions run side by side)
_was_enabled = False

# How often everything is walked again in full, so that a cycle that became garbage after it
# was frozen is freed: one deliberate full collection each time.
REWALK_EVERY_S = 600.0
_rewalk_at = 0.0  # monotonic time of the next rewalk, set by survivors_settled
_settling = False  # while a service serves (survivors_settled): batches freeze what they kept


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
            if _settling:
                settle_survivors()
            gc.enable()


@contextmanager
def survivors_settled() -> Iterator[None]:
    """While it runs, the end of each batch freezes what the batch kept (settle_survivors).

    Part of the serving process's collector regime (shared/runtime.py, settled_heap, which
    unfreezes everything at shutdown); a consumer run anywhere else (a command, a test) leaves
    the collector's generations as they are.
    """
    global _settling, _rewalk_at
    _settling = True
    _rewalk_at = time.monotonic() + REWALK_EVERY_S
    try:
        yield
    finally:
        _settling = False


def settle_survivors() -> None:
    """At the end of a batch, freeze what it kept: the collector never walks it again.

    With the collector paused for the batch, what the batch kept (scoring's new lead states in
    its cache, ~30 objects each) stayed young, and the first collection after the batch walked
    all of it: at 1,000 events/s, scoring's young collections took 536 ms in 33 (up to 0.25 s
    each), a pause every lead in flight waited through. Frozen, the survivors are still freed
    by reference counting (the lead states hold no cycles); only a cycle that becomes garbage
    while frozen waits for the next rewalk: every REWALK_EVERY_S the whole heap is unfrozen
    and collected once, then frozen again. Called between batches.
    """
    global _rewalk_at
    now = time.monotonic()
    if now >= _rewalk_at:
        _rewalk_at = now + REWALK_EVERY_S
        gc.unfreeze()
        gc.collect()
    gc.freeze()
