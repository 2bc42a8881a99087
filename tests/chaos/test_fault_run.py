"""The reduced fault run: 5,000 events, each kind of fault once, on a Kafka and a PostgreSQL
of its own (ports 19092 and 15432, state in .local/chaos, as `make chaos`; on xdist worker N
the ports are 10 * N higher and the state is .local/chaos-gwN); `make chaos` is the full run."""

from pathlib import Path

import pytest

from harness.chaos import ChaosConfig, ChaosRun
from shared.settings import REPO_ROOT
from tests.workers import worker_index, worker_port

pytestmark = pytest.mark.integration


async def test_nothing_is_lost_or_counted_twice_while_every_kind_of_fault_lands(
    tmp_path: Path,
) -> None:
    worker = worker_index()
    config = ChaosConfig(
        seed=7,
        events=5_000,
        rounds=1,
        rate_per_s=400,
        settle_timeout_s=300,
        state_dir=REPO_ROOT / ".local" / ("chaos" if worker == 0 else f"chaos-gw{worker}"),
        kafka_port=worker_port(ChaosConfig.kafka_port),
        postgres_port=worker_port(ChaosConfig.postgres_port),
        log_dir=tmp_path,
    )
    report = await ChaosRun(config).run()
    print(report.render())
    assert report.figures["faults injected"] == 9
    assert report.ok, report.render()
