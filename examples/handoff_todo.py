"""A rep's to-do list from leadrouter's handoff topic, with SLA countdowns.

A reference subscriber, written the way a customer would write one: it knows leadrouter
only through its published event contract (GET /asyncapi.json, docs/asyncapi.md), not
through its code. It reads `leadrouter.handoffs.v1` as a consumer group, keeps every open
handoff in memory (rebuilt from the start of each partition it is given), and prints the
list every few seconds.

    pip install aiokafka
    python examples/handoff_todo.py --rep rep-ana            # one rep's list, live
    python examples/handoff_todo.py --once                   # everybody's list, then exit
"""

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

# What each handoff event means for the to-do list.
OPEN_KINDS = {"assigned", "reassigned", "accepted", "sla_warning", "sla_breached"}
CLOSED_KINDS = {"contacted", "rejected", "recycled", "converted"}


def apply(todo: dict[str, dict], event: dict) -> None:
    """Fold one handoff event into the to-do list (handoff id -> what the rep must do)."""
    kind = event["type"].rsplit(".", 1)[-1]
    data = event["data"]
    handoff_id = data["handoff_id"]
    if kind in CLOSED_KINDS or data.get("rep_id") is None:
        todo.pop(handoff_id, None)  # done, handed back, or waiting in a queue
        return
    if kind not in OPEN_KINDS:
        return  # a kind this subscriber does not know yet: new kinds are additive
    item = todo.setdefault(handoff_id, {"warned": False, "breached": False})
    item.update(
        rep_id=data["rep_id"],
        rep_name=data.get("rep_name") or data["rep_id"],
        lead=data.get("email") or data["lead_key"],
        company=(data.get("attributes") or {}).get("company"),
        tier=data.get("tier"),
        score=data["score"],
        status=data["status"],
        accept_by=data.get("accept_by"),
        contact_by=data.get("contact_by"),
    )
    if kind == "reassigned":
        item.update(warned=False, breached=False)  # a new rep, a new clock
    item["warned"] |= kind == "sla_warning"
    item["breached"] |= kind == "sla_breached"


def countdown(deadline: str | None, now: datetime) -> str:
    """`12:05 left` or `OVERDUE 3:10` (minutes:seconds; hours when it is that long)."""
    if deadline is None:
        return "no deadline"
    seconds = int((datetime.fromisoformat(deadline) - now).total_seconds())
    minutes, secs = divmod(abs(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
    return f"{text} left" if seconds >= 0 else f"OVERDUE {text}"


def render(todo: dict[str, dict], now: datetime, rep: str | None = None) -> str:
    """The to-do list per rep, most urgent first."""
    by_rep: dict[str, list[tuple[str, str]]] = {}
    for item in todo.values():
        if rep and item["rep_id"] != rep:
            continue
        # Before acceptance the accept deadline runs; after it, the first-contact deadline.
        action, due = (
            ("accept", item["accept_by"])
            if item["status"] == "assigned"
            else ("call", item["contact_by"])
        )
        flag = " [SLA breached]" if item["breached"] else " [warned]" if item["warned"] else ""
        who = item["lead"] + (f" ({item['company']})" if item["company"] else "")
        line = (
            f"  {countdown(due, now):>16}  {action:<6} {who}  "
            f"{item['tier'] or '-'} score {item['score']}{flag}"
        )
        by_rep.setdefault(item["rep_name"], []).append((due or "9999", line))
    if not by_rep:
        return f"{now:%H:%M:%S} nothing to do" + (f" for {rep}" if rep else "")
    out = []
    for name in sorted(by_rep):
        out.append(f"{now:%H:%M:%S} {name}: {len(by_rep[name])} open")
        out += [line for _, line in sorted(by_rep[name])]
    return "\n".join(out)


class RebuildOnAssignment(ConsumerRebalanceListener):
    """The list lives in memory, so a partition we are given is read again from its start."""

    def __init__(self, consumer: AIOKafkaConsumer, todo: dict[str, dict]) -> None:
        self.consumer, self.todo = consumer, todo

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if assigned:
            await self.consumer.seek_to_beginning(*assigned)


async def caught_up(consumer: AIOKafkaConsumer) -> bool:
    """True once we own partitions and have read each to its end."""
    assigned = consumer.assignment()
    if not assigned:
        return False
    ends = await consumer.end_offsets(list(assigned))
    return all([await consumer.position(tp) >= ends[tp] for tp in assigned])


async def run(args: argparse.Namespace) -> None:
    # A consumer group: run several copies and they share the partitions (each lead's
    # events stay in one partition, in order).
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap, group_id=args.group, enable_auto_commit=False
    )
    todo: dict[str, dict] = {}
    seen: set[str] = set()
    await consumer.start()
    consumer.subscribe([args.topic], listener=RebuildOnAssignment(consumer, todo))
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(args.refresh_s * 1000))
            for records in batch.values():
                for record in records:
                    event = json.loads(record.value)
                    if event["id"] in seen:
                        continue  # at-least-once delivery: ids make duplicates harmless
                    seen.add(event["id"])
                    apply(todo, event)
            if args.once:
                if await caught_up(consumer):
                    print(render(todo, datetime.now(UTC), args.rep))
                    return
                continue
            print(render(todo, datetime.now(UTC), args.rep), end="\n\n", flush=True)
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="A rep's to-do list with SLA countdowns")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="leadrouter.handoffs.v1")
    parser.add_argument("--group", default="handoff-todo", help="consumer group")
    parser.add_argument("--rep", help="only this rep's list (a rep id, e.g. rep-ana)")
    parser.add_argument("--refresh-s", type=float, default=5, help="reprint at least this often")
    parser.add_argument("--once", action="store_true", help="print once caught up, then exit")
    try:
        asyncio.run(run(parser.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
