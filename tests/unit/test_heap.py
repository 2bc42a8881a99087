"""The collector pause of a consumer batch: nested (partitions side by side), then as before."""

import gc

from shared.heap import collector_paused


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
