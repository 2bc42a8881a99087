"""The collector pause of a consumer batch: nested (partitions side by side), then as before."""

import gc

from shared.heap import collector_paused, survivors_settled


def test_the_collector_resumes_when_the_last_batch_in_hand_ends():
    assert gc.isenabled()
    first, second = collector_paused(), collector_paused()
    first.__enter__()
    second.__enter__()
    assert not gc.isenabled()
    first.__exit__(None, None, None)  # the other partition's batch is still in hand
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()  # as a replay runs
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_failing_batch_resumes_the_collector():
    try:
        with collector_paused():
            raise ValueError("poison")
    except ValueError:
        pass
    assert gc.isenabled()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_what_a_batch_kept_is_frozen_and_a_rewalk_frees_a_cycle_dropped_since(monkeypatch):
    import weakref

    import shared.heap as heap

    gc.unfreeze()
    try:
        with survivors_settled():
            with collector_paused():
                kept = _Node()
            # the batch's survivors are out of the collector's walks
            assert gc.get_freeze_count() > 0
            gone = weakref.ref(kept)
            del kept
            gc.collect()
            assert gone() is not None  # frozen: a full collection does not walk it

            monkeypatch.setattr(heap, "_rewalk_at", 0.0)  # the rewalk is due
            with collector_paused():
                pass
            assert gone() is None
    finally:
        gc.unfreeze()


def test_outside_a_serving_process_a_batch_freezes_nothing():
    gc.unfreeze()
    with collector_paused():  # a consumer in a command or a test
        _Node()
    assert gc.get_freeze_count() == 0
