"""The reduced fault run: 5,000 events, each kind of fault once, on a Kafka and a PostgreSQL
of its own (ports 19092 and 15432 as `make chaos`, or LEADROUTER_TEST_CHAOS_KAFKA_PORT and
_POSTGRES_PORT; 10 higher per xdist worker; state in .local/chaos, or .local/chaos-<kafka port>
on other ports); `make chaos` is the full run."""

import os
from pathlib import Path

import pytest

from harness.chaos import ChaosConfig, ChaosRun
from shared.settings import REPO_ROOT
from tests.workers import worker_port

pytestmark = pytest.mark.integration


async def test_nothing_is_lost_or_counted_twice_while_every_kind_of_fault_lands(
    tmp_path: Path,
) -> None:
    kafka_port = worker_port(
        int(os.environ.get("LEADROUTER_TEST_CHAOS_KAFKA_PORT", ChaosConfig.kafka_port))
    )
    postgres_port = worker_port(
        int(os.environ.get("LEADROUTER_TEST_CHAOS_POSTGRES_PORT", ChaosConfig.postgres_port))
    )
    # A cluster's port is written into its state: a state folder per port.
    state = "chaos" if kafka_port == ChaosConfig.kafka_port else f"chaos-{kafka_port}"
    config = ChaosConfig(
        seed=7,
        events=5_000,
        rounds=1,
        rate_per_s=400,
        settle_timeout_s=300,
        state_dir=REPO_ROOT / ".local" / state,
        kafka_port=kafka_port,
        postgres_port=postgres_port,
        log_dir=tmp_path,
    )
    report = await ChaosRun(config).run()
    print(report.render())
    assert report.figures["faults injected"] == 9
    assert report.ok, report.render()
