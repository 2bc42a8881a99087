"""The seeded fault schedule: which fault lands at which point of the stream. Pure."""

import random
from dataclasses import dataclass

# Every kind of fault the harness can inject (README, "Fault injection", describes each).
KILL_INGEST = "sigkill ingest"
KILL_SCORING = "sigkill scoring"
KILL_HANDOFF = "sigkill handoff"
KILL_KAFKA = "sigkill kafka"
PAUSE_KAFKA = "sigstop kafka"
POSTGRES_FAST = "postgres fast restart"
POSTGRES_IMMEDIATE = "postgres immediate restart"
REBALANCE_SCORING = "rebalance scoring"  # start one more instance, SIGKILL an old one
REBALANCE_HANDOFF = "rebalance handoff"

ALL_KINDS = (
    KILL_INGEST,
    KILL_SCORING,
    KILL_HANDOFF,
    KILL_KAFKA,
    PAUSE_KAFKA,
    POSTGRES_FAST,
    POSTGRES_IMMEDIATE,
    REBALANCE_SCORING,
    REBALANCE_HANDOFF,
)


@dataclass(frozen=True)
class Fault:
    """One fault: inject `kind` once `at_event` events have been sent, after `delay_s`."""

    at_event: int
    kind: str
    delay_s: float  # a random moment inside the request traffic, not on a request boundary
    down_s: float  # how long a stopped part stays down (or a paused broker stays paused)


def fault_schedule(seed: int, events: int, rounds: int, pause_s: float) -> list[Fault]:
    """`rounds` of every fault kind, each round shuffled, at random points of the stream.

    Faults land between 5% and 90% of the stream, so traffic flows before, during and after
    each; `pause_s` is how long a paused broker stays stopped (longer than the producer's
    timeout, so requests see it).
    """
    rng = random.Random(seed)
    kinds = []
    for _ in range(rounds):
        kinds += rng.sample(ALL_KINDS, len(ALL_KINDS))
    slots = len(kinds)
    span = (int(events * 0.05), int(events * 0.9))
    width = (span[1] - span[0]) / slots
    faults = []
    for i, kind in enumerate(kinds):
        at = int(span[0] + width * (i + rng.random() * 0.8))
        down_s = pause_s if kind == PAUSE_KAFKA else round(rng.uniform(1, 4), 2)
        faults.append(Fault(at, kind, round(rng.uniform(0, 0.5), 3), down_s))
    return faults
