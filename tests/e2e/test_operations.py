"""Operations: SIGTERM shuts a service down cleanly; logs are JSON lines without emails."""

import json
import signal

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.events import CONTENT_TYPE
from shared.kafka import LEAD_EVENTS, client_options, ensure_topics, make_producer
from tests.helpers import activity_event, eventually

pytestmark = pytest.mark.integration


async def test_sigterm_finishes_work_and_leaves_the_group(settings, services):
    await ensure_topics(settings)
    scoring = await services["scoring"].start()
    producer = make_producer(settings)
    await producer.start()
    try:
        for i in range(50):
            event = activity_event(f"quiet{i}@acme.example", "demo_request", i)
            await producer.send_and_wait(
                settings.topic(LEAD_EVENTS),
                event.to_bytes(),
                key=event.subject.encode(),
                headers=[("content-type", CONTENT_TYPE.encode())],
            )
    finally:
        await producer.stop()

    group_id = settings.consumer_group("scoring")
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:

        async def members() -> int:
            (response,) = await admin.describe_consumer_groups([group_id])
            (group,) = response.groups
            return len(group[5])  # (error, group, state, protocol type, protocol, members, ...)

        await eventually(members, 30, "scoring to join its group")
        scoring.process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after its graceful shutdown, so the status is -SIGTERM;
        # the "stopped" log line below is what proves the shutdown ran to its end.
        assert scoring.process.wait(30) in (0, -signal.SIGTERM)
        assert await members() == 0  # it left the group instead of timing out of it
    finally:
        await admin.close()

    lines = [json.loads(line) for line in scoring.log_path.read_text().splitlines() if line]
    assert {"time", "level", "service", "logger", "message"} <= set(lines[0])
    assert {line["service"] for line in lines} == {"scoring"}
    assert any(line["message"] == "scoring: stopped" for line in lines)
    info = [line["message"] for line in lines if line["level"] == "info"]
    assert not any("@acme.example" in message for message in info)
