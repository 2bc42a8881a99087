"""A real Prometheus scrapes the running services and evaluates the project's alert rules."""

import asyncio
import shutil
import subprocess

import httpx
import pytest
import yaml

from harness.processes import free_port
from shared.kafka import LEAD_EVENTS, ensure_topics, make_producer
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT
from tests.helpers import eventually, minutes_ago, start_all

pytestmark = pytest.mark.integration


@pytest.fixture
def prometheus_config(tmp_path, services):
    def write(interval_s: str = "1s"):
        config = {
            "global": {"scrape_interval": interval_s, "evaluation_interval": interval_s},
            "rule_files": [
                str(p) for p in sorted((REPO_ROOT / "deploy/prometheus/rules").glob("*.yml"))
            ],
            "scrape_configs": [
                {
                    "job_name": "leadrouter",
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{s.port}"], "labels": {"service": name}}
                        for name, s in services.items()
                    ],
                }
            ],
        }
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    return write


@pytest.mark.poison
async def test_prometheus_sees_the_pipeline_and_fires_the_dead_letter_alert(
    settings, services, prometheus_config, tmp_path
):
    assert shutil.which("prometheus"), "prometheus missing: make infra-up installs it"
    await start_all(services.values())
    port = free_port()
    prometheus = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
        [
            "prometheus",
            f"--config.file={prometheus_config()}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def query(expr: str) -> list:
                try:
                    response = await client.get(f"{api}/query", params={"query": expr})
                except httpx.HTTPError:
                    return []
                return response.json()["data"]["result"] if response.status_code == 200 else []

            await eventually(
                lambda: query('count(up{job="leadrouter"} == 1) == 3'), 60, "all three targets up"
            )

            # Traffic: a lead that qualifies, and one record no consumer can decode.
            ingest = services["ingest"].url
            accepted = await client.post(
                f"{ingest}/v1/events",
                json=[
                    {
                        "id": "p-1",
                        "identity": {"email": "prom@acme.example"},
                        "activity": {"type": "demo_request", "occurred_at": minutes_ago(60)},
                    },
                    {
                        "id": "p-2",
                        "identity": {"email": "prom@acme.example"},
                        "activity": {"type": "form_submit", "occurred_at": minutes_ago(59)},
                    },
                ],
            )
            assert accepted.status_code == 202
            await ensure_topics(settings)
            producer = make_producer(settings)
            await producer.start()
            try:
                await producer.send_and_wait(
                    settings.topic(LEAD_EVENTS), b"\xff not json", key=b"x"
                )
            finally:
                await producer.stop()

            handoffs = await eventually(
                lambda: query('sum(leadrouter_handoffs_total{outcome="assigned"}) == 1'),
                60,
                "the handoff counted by Prometheus",
            )
            assert float(handoffs[0]["value"][1]) == 1
            accepted_events = await eventually(
                lambda: query('sum(leadrouter_ingest_events_total{outcome="accepted"}) == 2'),
                30,
                "ingest's accepted events",
            )
            assert accepted_events
            # The SLA side: the warm lead is an open handoff, and SLA outcomes are exported.
            assert await eventually(
                lambda: query('leadrouter_handoffs_open{tier="warm"} == 1'), 30, "open handoffs"
            )
            assert await query("count(leadrouter_sla_outcomes_total) > 0")
            # The goals: each of the playbook's goals stands in exactly one status.
            goals = len(load_playbook(REPO_ROOT / "deploy" / "playbook.example.yaml").goals)
            assert await eventually(
                lambda: query(f"count(leadrouter_goal_status == 1) == {goals}"), 30, "goal gauges"
            )
            firing = await eventually(
                lambda: query('ALERTS{alertname="LeadrouterDeadLetters", alertstate="firing"}'),
                60,
                "the dead-letter alert to fire",
            )
            assert firing[0]["metric"]["consumer"] == "scoring"
            # Nothing else is wrong, so nothing else fires.
            others = await query('ALERTS{alertstate="firing", alertname!="LeadrouterDeadLetters"}')
            assert others == []
    finally:
        prometheus.terminate()
        await asyncio.to_thread(prometheus.wait, 20)
