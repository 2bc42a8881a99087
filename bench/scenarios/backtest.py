"""The backtest's pure cores on one core: a generated history through `simulate`, events/s.

Decoding the history (JSON and pydantic) is measured apart from the simulation, because a
backtest decodes once and runs two playbooks over the same decoded events. The simulation
runs a few times and the fastest run counts (the machine is shared and noisy); its CPU time
is reported too, since on a busy machine the wall clock also counts other processes' turns.
"""

import time
from datetime import UTC, datetime

from pydantic import TypeAdapter

from bench.env import progress
from bench.result import Figure, Result
from services.backtest.demo import history
from services.backtest.simulate import decode, simulate
from services.ingest.normalise import NativeLeadEvent, native_to_cloud_event
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT


async def run(quick: bool) -> Result:
    people, rounds = (3000, 3) if quick else (20000, 3)
    result = Result("backtest")
    playbook = load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml")
    native = TypeAdapter(NativeLeadEvent)
    progress(f"  generating a history of {people} people over 90 days")
    raw = history(people, 90, seed=1, end=datetime.now(UTC))
    events = [native_to_cloud_event(native.validate_python(e), "api") for e in raw]
    started = time.perf_counter()
    decoded = decode(events)
    decoding = len(decoded) / (time.perf_counter() - started)
    walls, cpus = [], []
    for _ in range(rounds):
        started, started_cpu = time.perf_counter(), time.process_time()
        outcome = simulate(decoded, playbook)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - started_cpu)
    result.figures += [
        Figure(
            "backtest events/s through the scoring and routing cores",
            len(decoded) / min(walls),
            "events/s",
            target=("min", 50000),
        ),
        Figure(
            "backtest events per CPU second through the scoring and routing cores",
            len(decoded) / min(cpus),
            "events/s",
        ),
        Figure("backtest history decoding events/s", decoding, "events/s"),
    ]
    result.notes.append(
        f"{len(decoded)} events from {people} people; {len(outcome.mqls)} MQLs, "
        f"{len(outcome.handoffs)} handoffs; fastest of {rounds} runs"
    )
    return result
