"""The fault run: a seeded stream through HTTP into the whole system while faults land.

`make chaos` runs the full size (`python -m harness.chaos`); the test suite runs a reduced
one (tests/chaos/). Both start and break their own Kafka and PostgreSQL (harness.infra),
run the three services as processes (two scoring and two handoff instances in their
groups), and afterwards reconcile what the system did against the pure scoring core
(harness.reconcile).
"""

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from harness import faults as f
from harness.infra import OwnInfra
from harness.processes import Service
from harness.reconcile import Observed, Record, Report, in_arrival_order, reconcile
from harness.stream import StreamShape, expected_outcome, lead_key_of, lead_stream
from shared.events import LEAD_ACTIVITY, CloudEvent
from shared.kafka import ALL_TOPICS, LEAD_EVENTS, dlq, ensure_topics, make_producer
from shared.migrate import upgrade_async
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT, Settings


@dataclass
class ChaosConfig:
    """One fault run's size and shape; the defaults are the full run of `make chaos`."""

    seed: int = 1
    events: int = 100_000
    rounds: int = 2  # how many times each fault kind is injected
    per_request: int = 50
    rate_per_s: float = 700.0  # pacing, so faults land while every service is busy
    instances: int = 2  # scoring and handoff instances in their groups
    partitions: int = 6
    publish_timeout_s: float = 4.0
    settle_timeout_s: float = 900.0
    state_dir: Path = REPO_ROOT / ".local" / "chaos"
    kafka_port: int = 19092
    postgres_port: int = 15432
    log_dir: Path = field(default_factory=lambda: REPO_ROOT / ".local" / "chaos" / "logs")
    keep_infra: bool = False  # leave Kafka and PostgreSQL running afterwards


OVERDUE_TIMERS = "select count(*) from timers where kind like 'handoff.%' and due_at <= $1"


def say(message: str) -> None:
    print(f"[chaos] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def chaos_playbook(path: Path) -> Path:
    """The example playbook's taxonomy and scoring, with routing that never queues a lead
    (one team, room for every lead, no working hours) and one-minute SLAs, so that every
    qualified lead is assigned and its SLA timers come due within the run."""
    book = yaml.safe_load((REPO_ROOT / "deploy" / "playbook.example.yaml").read_text())
    book["routing"] = {
        "rules": [{"name": "everyone", "team": "sales"}],
        "teams": [
            {
                "name": "sales",
                "fallback_queue": "sales-queue",
                "manager_queue": "sales-manager",
                "reps": [
                    {"id": f"rep-{i}", "name": f"Rep {i}", "capacity": 1_000_000} for i in range(4)
                ],
            }
        ],
    }
    minutes = {"accept_minutes": 1, "contact_minutes": 2}
    book["sla"] = {
        "tiers": {tier: dict(minutes) for tier in ("hot", "warm", "cold")},
        "warning_at": 0.6,
        "max_reassignments": 1,
        "reject_reasons": book["sla"]["reject_reasons"],
    }
    path.write_text(yaml.safe_dump(book, sort_keys=False))
    return path


def poison_records(seed: int, subject_hint: str) -> list[tuple[bytes, bytes]]:
    """(key, value) records written straight onto lead-events that scoring must dead-letter:
    undecodable bytes, a CloudEvent of a type nobody handles, and one whose data is invalid."""
    records = []
    for i in range(2):
        records.append((b"poison", f"\xff not json {seed}-{i}".encode("latin-1")))
        unknown = CloudEvent(
            id=f"poison-unknown-{seed}-{i}",
            source="chaos",
            type="leadrouter.chaos.unknown",
            time=datetime(2026, 1, 1, tzinfo=UTC),
            subject=subject_hint,
            data={},
        )
        invalid = CloudEvent(
            id=f"poison-invalid-{seed}-{i}",
            source="chaos",
            type=LEAD_ACTIVITY,
            time=datetime(2026, 1, 1, tzinfo=UTC),
            subject=subject_hint,
            data={"identity": {"email": "not-an-email"}, "activity": {"type": 7}},
        )
        records += [(subject_hint.encode(), e.to_bytes()) for e in (unknown, invalid)]
    return records


class ChaosRun:
    """One run: its infrastructure, services, traffic, faults and the figures it counts."""

    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.infra = OwnInfra(config.state_dir, config.kafka_port, config.postgres_port)
        self.rng = random.Random(config.seed)
        self.counts: Counter[str] = Counter()
        self.faults_done: Counter[str] = Counter()
        self.services: dict[str, list[Service]] = {}
        self.accepted_ids: set[str] = set()
        self.rejections: list[str] = []
        self.sent = 0
        self.progress = asyncio.Event()  # set whenever `sent` moves
        self.instance_serial = Counter[str]()

    # -- set-up ------------------------------------------------------------------------------

    async def prepare(self) -> None:
        config = self.config
        config.log_dir.mkdir(parents=True, exist_ok=True)
        run_id = uuid.uuid4().hex[:8]
        say(
            f"starting our own PostgreSQL on :{config.postgres_port}, Kafka on :{config.kafka_port}"
        )
        await self.infra.up()
        self.database = f"chaos_{run_id}"
        conn = await asyncpg.connect(self.infra.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()
        url = self.infra.database_url(self.database)
        await upgrade_async(url)
        self.playbook_path = chaos_playbook(config.log_dir / "playbook.yaml")
        self.playbook = load_playbook(self.playbook_path)
        self.settings = Settings(
            kafka_bootstrap=self.infra.kafka_bootstrap,
            database_url=url,
            topic_namespace=f"chaos{run_id}",
            topic_partitions=config.partitions,
            playbook=self.playbook_path,
        )
        await ensure_topics(self.settings)
        say(f"database {self.database}, topics {self.settings.topic_namespace}.*")

    def new_service(self, name: str) -> Service:
        self.instance_serial[name] += 1
        service = Service(
            name, self.settings, self.config.log_dir, f"{name}-{self.instance_serial[name]}"
        )
        service.env.update(
            LEADROUTER_PLAYBOOK=str(self.playbook_path),
            LEADROUTER_TOPIC_PARTITIONS=str(self.config.partitions),
            LEADROUTER_KAFKA_PUBLISH_TIMEOUT_S=str(self.config.publish_timeout_s),
            LEADROUTER_RATE_LIMIT_PER_S="1000000",
            LEADROUTER_RATE_LIMIT_BURST="1000000",
            LEADROUTER_CONSUMER_BATCH_MAX="100",  # many transactions for a kill to land inside
            LEADROUTER_SHUTDOWN_TIMEOUT_S="5",
        )
        return service

    async def start_services(self) -> None:
        self.services = {
            "ingest": [self.new_service("ingest")],
            "scoring": [self.new_service("scoring") for _ in range(self.config.instances)],
            "handoff": [self.new_service("handoff") for _ in range(self.config.instances)],
        }
        await asyncio.gather(*(s.start(180) for group in self.services.values() for s in group))
        say(
            "services ready: "
            + ", ".join(s.instance for group in self.services.values() for s in group)
        )

    def stop_services(self) -> None:
        for group in self.services.values():
            for service in group:
                service.stop()

    # -- traffic -----------------------------------------------------------------------------

    async def send(self, events: list[dict[str, Any]], schedule: list[f.Fault]) -> None:
        """POST the stream in requests, paced; retry every request until it gets a 202."""
        config = self.config
        started = {id(fault): asyncio.Event() for fault in schedule}
        self.fault_started = started
        poison_at = int(len(events) * 0.02)
        poisoned = False
        window = asyncio.Semaphore(4)
        start = time.monotonic()
        tasks = []
        async with httpx.AsyncClient(timeout=30) as client:
            for first in range(0, len(events), config.per_request):
                for fault in schedule:  # a fault lands while the stream is at its point
                    if fault.at_event <= first:
                        await started[id(fault)].wait()
                if not poisoned and first >= poison_at:
                    await self.publish_poison()
                    poisoned = True
                await asyncio.sleep(max(0, start + first / config.rate_per_s - time.monotonic()))
                await window.acquire()
                chunk = events[first : first + config.per_request]
                self.sent = first + len(chunk)
                self.progress.set()
                tasks.append(asyncio.create_task(self.post(client, chunk, window)))
            await asyncio.gather(*tasks)
        say(f"sent {len(events)} events in {time.monotonic() - start:.0f}s")

    async def post(
        self, client: httpx.AsyncClient, chunk: list[dict[str, Any]], window: asyncio.Semaphore
    ) -> None:
        try:
            self.counts["requests"] += 1
            while True:
                ingest = self.services["ingest"][0]
                try:
                    response = await client.post(f"{ingest.url}/v1/events", json=chunk)
                except httpx.HTTPError:
                    self.counts["connection errors (retried)"] += 1
                    await asyncio.sleep(0.5)
                    continue
                if response.status_code == 202:
                    self.accepted_ids.update(e["id"] for e in chunk)
                    return
                if response.status_code in (429, 503):
                    self.counts[f"{response.status_code}s answered (retried)"] += 1
                    retry_s = float(response.headers.get("retry-after", "1"))
                    await asyncio.sleep(min(retry_s, 2.0))
                    continue
                self.counts["requests refused for good"] += 1
                self.rejections.append(f"{response.status_code}: {response.text[:300]}")
                return
        finally:
            window.release()

    async def publish_poison(self) -> None:
        self.poison = poison_records(self.config.seed, "email:poison@chaos.example")
        producer = make_producer(self.settings)
        await producer.start()
        try:
            topic = self.settings.topic(LEAD_EVENTS)
            for key, value in self.poison:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()
        say(f"wrote {len(self.poison)} poison records onto {LEAD_EVENTS}")

    # -- faults ------------------------------------------------------------------------------

    async def inject(self, schedule: list[f.Fault]) -> None:
        """Inject each fault when the stream reaches its point, then wait for recovery."""
        for fault in schedule:
            while self.sent < fault.at_event:
                self.progress.clear()
                await self.progress.wait()
            await asyncio.sleep(fault.delay_s)
            self.fault_started[id(fault)].set()
            began = time.monotonic()
            await self.injectors()[fault.kind](fault)
            await self.all_ready()
            self.faults_done[fault.kind] += 1
            say(
                f"{fault.kind} at event {fault.at_event} "
                f"(down {fault.down_s}s): recovered in {time.monotonic() - began:.1f}s"
            )

    def injectors(self) -> dict[str, Callable[[f.Fault], Awaitable[None]]]:
        return {
            f.KILL_INGEST: lambda fault: self.kill_and_restart("ingest", fault.down_s),
            f.KILL_SCORING: lambda fault: self.kill_and_restart("scoring", fault.down_s),
            f.KILL_HANDOFF: lambda fault: self.kill_and_restart("handoff", fault.down_s),
            f.KILL_KAFKA: lambda fault: self.infra.kill_kafka(fault.down_s),
            f.PAUSE_KAFKA: lambda fault: self.infra.pause_kafka(fault.down_s),
            f.POSTGRES_FAST: lambda fault: self.infra.restart_postgres("fast", fault.down_s),
            f.POSTGRES_IMMEDIATE: lambda fault: self.infra.restart_postgres(
                "immediate", fault.down_s
            ),
            f.REBALANCE_SCORING: lambda fault: self.rebalance("scoring"),
            f.REBALANCE_HANDOFF: lambda fault: self.rebalance("handoff"),
        }

    async def kill_and_restart(self, name: str, down_s: float) -> None:
        service = self.rng.choice(self.services[name])
        service.kill()
        await asyncio.sleep(down_s)
        await service.start(180)

    async def rebalance(self, name: str) -> None:
        """One more instance joins the group, then the oldest is SIGKILLed for good."""
        joining = await self.new_service(name).start(180)
        self.services[name].append(joining)
        self.services[name].pop(0).kill()

    async def all_ready(self, timeout_s: float = 240) -> None:
        await asyncio.gather(
            *(s.wait_ready(timeout_s) for group in self.services.values() for s in group)
        )

    # -- settling and reading back -----------------------------------------------------------

    async def _until(self, what: str, sql: str, want: tuple[int, ...], *args: Any) -> None:
        """Poll `sql` until it returns `want`, or say so once the settle deadline passed."""
        conn = await asyncpg.connect(self.infra.admin_dsn.rsplit("/", 1)[0] + f"/{self.database}")
        last = None
        try:
            while time.monotonic() < self.deadline:
                last = tuple(await conn.fetchrow(sql, *args))
                if last == want:
                    return
                await asyncio.sleep(1)
            say(f"gave up waiting for {what}: {last} != {want}")
        finally:
            await conn.close()

    async def settle_projection(self, want_leads: int, want_events: int) -> None:
        """Wait until every accepted event is counted in the projection."""
        self.settle_began = time.monotonic()
        self.deadline = self.settle_began + self.config.settle_timeout_s
        await self._until(
            "the projection",
            "select count(*), coalesce(sum(events_count), 0) from leads",
            (want_leads, want_events),
        )

    async def settle(self, want_handoffs: int) -> datetime:
        """Wait until the handoffs, due SLA timers and the outboxes are done; read the tables."""
        conn = await asyncpg.connect(self.infra.admin_dsn.rsplit("/", 1)[0] + f"/{self.database}")

        try:
            await self._until("the handoffs", "select count(*) from handoffs", (want_handoffs,))
            cutoff: datetime = await conn.fetchval("select now()")
            await self._until("due SLA timers", OVERDUE_TIMERS, (0,), cutoff)
            await self._until("the outboxes", "select count(*) from outbox", (0,))
            self.overdue = await conn.fetchval(OVERDUE_TIMERS, cutoff)
            self.projection = {
                r["lead_key"]: (r["events_count"], r["score"], r["stage"])
                for r in await conn.fetch("select lead_key, events_count, score, stage from leads")
            }
            self.handoffs = [
                (r["handoff_id"], r["lead_key"])
                for r in await conn.fetch("select handoff_id, lead_key from handoffs")
            ]
            say(f"settled in {time.monotonic() - self.settle_began:.0f}s")
            return cutoff
        finally:
            await conn.close()

    async def read_topics(self) -> dict[str, list[Record]]:
        """Every committed record of every topic and DLQ, from the start to the end offsets."""
        names = {self.settings.topic(short): short for short in ALL_TOPICS}
        names |= {dlq(topic): f"{short}.dlq" for topic, short in list(names.items())}
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            # The run created every topic (ensure_topics) with this many partitions.
            partitions = [
                TopicPartition(topic, p)
                for topic in names
                for p in range(self.settings.topic_partitions)
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            records: dict[str, list[Record]] = {short: [] for short in names.values()}
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, recs in batch.items():
                    records[names[tp.topic]] += [
                        Record.of(r.value) for r in recs if r.value is not None
                    ]
            return records
        finally:
            await consumer.stop()

    # -- the whole run -----------------------------------------------------------------------

    async def run(self) -> Report:
        config = self.config
        began = time.monotonic()
        await self.prepare()
        try:
            shape = StreamShape(
                seed=config.seed,
                events=config.events,
                base_time=datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1),
            )
            events = lead_stream(shape)
            # In sending order, before the services start (the machine is idle now): compared
            # afterwards with the arrival order's outcome, as a figure.
            in_sending_order = expected_outcome(events, self.playbook)
            schedule = f.fault_schedule(
                config.seed, config.events, config.rounds, config.publish_timeout_s + 4
            )
            say(
                f"seed {config.seed}: {len(events)} events from {shape.base_time.isoformat()}, "
                f"{len(schedule)} faults: " + ", ".join(x.kind for x in schedule)
            )
            await self.start_services()
            await asyncio.gather(self.send(events, schedule), self.inject(schedule))
            accepted = [e for e in events if e["id"] in self.accepted_ids]
            say(f"{len(accepted)} events accepted; waiting for the system to settle")
            await self.settle_projection(len({lead_key_of(e) for e in accepted}), len(accepted))
            # The pure core over the events in the order each lead's partition holds them.
            arrived = in_arrival_order(accepted, (await self.read_topics())["lead-events"])
            expected = expected_outcome(arrived, self.playbook)
            cutoff = await self.settle(sum(expected.mqls.values()))
            observed = Observed(
                accepted=accepted,
                projection=self.projection,
                handoffs=self.handoffs,
                topics=await self.read_topics(),
                overdue_timers=self.overdue,
                cutoff=cutoff,
                poison=[value for _, value in self.poison],
            )
            report = reconcile(observed, expected, self.playbook)
            report.check(
                "every request was answered 202 in the end",
                not self.rejections,
                f"{len(self.rejections)} refused"
                + (f": {self.rejections[:2]}" if self.rejections else ""),
            )
            report.figures = {
                "seed": config.seed,
                "events sent": len(events),
                "events accepted (202)": len(accepted),
                **{k: v for k, v in sorted(self.counts.items())},
                "faults injected": sum(self.faults_done.values()),
                **{f"  {k}": v for k, v in sorted(self.faults_done.items())},
                "instances started": sum(self.instance_serial.values()),
                "leads whose outcome differs in sending order (retries reorder)": sum(
                    1
                    for key, state in in_sending_order.leads.items()
                    if key in expected.leads
                    and (state.stage, state.score.total)
                    != (expected.leads[key].stage, expected.leads[key].score.total)
                ),
                **report.figures,
                "minutes": round((time.monotonic() - began) / 60, 1),
            }
            return report
        finally:
            self.stop_services()
            if not config.keep_infra:
                await self.infra.down()


def main(argv: list[str] | None = None) -> int:
    """`make chaos`: the full fault run; prints the reconciliation, exits 1 on any failure."""
    parser = argparse.ArgumentParser(prog="python -m harness.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, help="times each fault kind is injected")
    parser.add_argument("--rate", type=float, default=700.0, help="events per second sent")
    parser.add_argument("--keep-infra", action="store_true", help="leave Kafka and Postgres up")
    parser.add_argument("--kafka-port", type=int, default=ChaosConfig.kafka_port)
    parser.add_argument("--postgres-port", type=int, default=ChaosConfig.postgres_port)
    args = parser.parse_args(argv)
    config = ChaosConfig(
        seed=args.seed,
        events=args.events,
        rounds=args.rounds,
        rate_per_s=args.rate,
        keep_infra=args.keep_infra,
        kafka_port=args.kafka_port,
        postgres_port=args.postgres_port,
    )
    report = asyncio.run(ChaosRun(config).run())
    print(f"\nchaos run, seed {config.seed}: {'PASSED' if report.ok else 'FAILED'}")
    print(report.render())
    print(json.dumps(report.figures, default=str), file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
