"""Read the recorded history from Kafka: the lead-events and handoffs topics, start to end.

The topics are the system of record, so the replay (services/scoring/replay.py) and the
backtest (services/backtest/) both read them as a plain, group-less consumer that never
disturbs the services. Set the topics' retention to cover the history you want to read.
"""

import sys
import time
from typing import TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from shared.consumer import partitions_of
from shared.events import LEAD_ACTIVITY, CloudEvent, LeadActivityData
from shared.kafka import HANDOFFS, LEAD_EVENTS, client_options
from shared.settings import CommonSettings


class _LeadActivityEvent(CloudEvent):
    """A lead activity event with its data validated in the same pass as the envelope."""

    data: LeadActivityData  # type: ignore[assignment]


def decode_record(raw: bytes) -> tuple[CloudEvent, LeadActivityData | None] | None:
    """A record's event as the consumers decode it, and its activity if it is a lead activity.

    None when it is not a CloudEvent (the consumers dead-letter it). A lead activity, nearly
    every record, is validated in one pass (envelope and data); anything else, or a record
    whose data fails that pass, is decoded as the consumers do it, the data left to them.
    """
    try:
        event = _LeadActivityEvent.model_validate_json(raw)
    except ValidationError:
        pass
    else:
        if event.type == LEAD_ACTIVITY:
            return event, event.data  # the envelope's `data` is the validated activity here
    try:
        return CloudEvent.from_bytes(raw), None
    except ValueError:
        return None


async def open_history(
    settings: CommonSettings, *, max_partition_fetch_bytes: int, fetch_max_bytes: int = 52428800
) -> tuple[AIOKafkaConsumer, dict[TopicPartition, int]]:
    """A started, group-less consumer of the lead-events and handoffs topics' committed records,
    assigned every partition and positioned at its first record; with each partition's first
    offset. The caller stops it."""
    topics = [settings.topic(LEAD_EVENTS), settings.topic(HANDOFFS)]
    partitions = await partitions_of(client_options(settings), topics)
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        enable_auto_commit=False,
        # Never "latest": a position reset racing the seeks below would skip the history.
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=max_partition_fetch_bytes,
        fetch_max_bytes=fetch_max_bytes,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, starts[tp])  # a known position at once, no reset in flight
    except BaseException:
        await consumer.stop()
        raise
    return consumer, starts


async def read_events(settings: CommonSettings, out: TextIO = sys.stderr) -> list[CloudEvent]:
    """Every CloudEvent on both topics up to the end offsets they have when it starts.

    Records that are not CloudEvents are skipped: poison stays the dead-letter topics' business.
    """
    consumer, starts = await open_history(settings, max_partition_fetch_bytes=4 * 1024 * 1024)
    partitions = list(starts)
    events: list[CloudEvent] = []
    try:
        ends = await consumer.end_offsets(partitions)
        total = sum(ends.values())
        done, shown = 0, 0.0
        while True:
            positions = {tp: await consumer.position(tp) for tp in partitions}
            done = sum(min(positions[tp], ends[tp]) for tp in partitions)
            if time.monotonic() - shown > 1 or done >= total:
                show_progress("reading history", done, total, out)
                shown = time.monotonic()
            if all(positions[tp] >= ends[tp] for tp in partitions):
                break
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    try:
                        events.append(CloudEvent.from_bytes(record.value))
                    except ValueError:
                        continue
    finally:
        await consumer.stop()
    return events


def show_progress(what: str, done: int, total: int, out: TextIO) -> None:
    """Draw a one-line progress bar; a newline once done reaches total."""
    width = 30
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "-" * (width - filled)
    print(f"\r[{bar}] {what}: {done}/{total} records", end="", file=out, flush=True)
    if done >= total:
        print(file=out, flush=True)
