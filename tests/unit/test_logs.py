"""Outage logging: one line per state change and a periodic summary, never one per retry."""

import logging

from shared.logs import AdvisoryCommitLevel, Outage, RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_repeat_filter_lets_one_line_per_template_per_window_through_and_counts_the_rest():
    clock = Clock()
    only_aiokafka = RepeatFilter(prefixes=("aiokafka",), window_s=60, clock=clock)
    passed = []
    for second in range(120):  # a broker down for two minutes, a reconnect error every 0.5s
        for node in (1, 2):
            clock.now = second + node / 4
            line = record("aiokafka.conn", "Unable connect to node with id %s: %s", node, "refused")
            if only_aiokafka.filter(line):
                passed.append(line.getMessage())
    assert passed == [
        "Unable connect to node with id 1: refused",
        "Unable connect to node with id 1: refused [119 similar line(s) in the last window]",
    ]
    ours = record("shared.outbox", "outbox relay %s parked row %d", "scoring", 1)
    assert only_aiokafka.filter(ours) and only_aiokafka.filter(ours)  # not ours to silence


def test_outage_logs_start_summary_and_recovery_once_each(caplog):
    clock = Clock()
    outage = Outage(logging.getLogger("test.outage"), "relay x", summary_every_s=60, clock=clock)
    caplog.set_level(logging.INFO, logger="test.outage")
    for second in range(130):  # a retry every second for 130 s
        clock.now = float(second)
        outage.failed(ConnectionRefusedError("refused"))
    assert outage.duration_s() == 129
    clock.now = 131.0
    outage.recovered()
    outage.recovered()  # already working: nothing more to say
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "relay x failing (ConnectionRefusedError: refused); retrying with backoff",
        "relay x still failing after 60s and 61 tries (ConnectionRefusedError: refused)",
        "relay x still failing after 120s and 121 tries (ConnectionRefusedError: refused)",
        "relay x working again after 131s and 130 failed tries",
    ]
    assert all(r.exc_info is None for r in caplog.records)
    assert outage.duration_s() == 0


def test_aiokafkas_refused_advisory_commit_is_logged_at_info_and_other_errors_stay_errors():
    lower = AdvisoryCommitLevel()
    refused = record(
        "aiokafka.consumer.group_coordinator",
        "OffsetCommit failed for group %s due to group error (%s), will rejoin",
        "scoring",
        "UnknownMemberIdError",
    )
    assert lower.filter(refused)
    assert (refused.levelno, refused.levelname) == (logging.INFO, "INFO")
    denied = record(
        "aiokafka.consumer.group_coordinator", "OffsetCommit failed for group %s - %s", "g", "x"
    )
    elsewhere = record("shared.consumer", "OffsetCommit failed for group %s due to group", "g")
    for line in (denied, elsewhere):
        assert lower.filter(line) and line.levelno == logging.ERROR
