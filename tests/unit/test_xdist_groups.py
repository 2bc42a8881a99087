"""Tests that share servers of their own on fixed ports run on one worker: the mark must work.

pytest 9.2 with pytest-xdist 3.8 dropped every `xdist_group` mark silently (xdist#1386): the
SASL Kafka tests then ran on two workers, and one worker's teardown stopped the broker the
other was using. This fails when the pinned versions stop honouring the mark again.
"""

import pytest

pytestmark = [pytest.mark.xdist_group("xdist_group_guard")]


def test_an_xdist_group_mark_reaches_the_scheduler(request: pytest.FixtureRequest) -> None:
    if not request.config.getvalue("loadgroup"):
        pytest.skip("not distributed with --dist loadgroup (e.g. -n 0)")
    assert request.node.nodeid.endswith("@xdist_group_guard")
