"""`leadrouter demo seed`: a realistic generated history, sent into a running system.

The generator is pure and seeded: people from companies of many sizes, some on free mail,
one competitor; each with a hidden buying intent that drives what they do (page views,
pricing pages, email opens and clicks, webinars, forms, demo requests) over the days, and
what sales later does with them (accept, contact, convert, or reject with a reason). Some
people are first known only by a HubSpot id and give their email later, so identities merge.
Each person came from a campaign (their first activity's touch; email activity carries the
nurture campaign), and sales' feedback carries insight tags and what deals were worth, so
`GET /v1/funnel?group_by=campaign` and the board's Campaigns page have something to show.
"""

import asyncio
import logging
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

FIRST = ["ana", "ben", "chen", "dora", "eli", "fay", "gus", "hana", "ivo", "jun", "kai", "lea"]
COMPANIES = [
    ("acme.example", "Acme", 250),
    ("bigco.example", "BigCo", 5000),
    ("globex.example", "Globex", 1200),
    ("initech.example", "Initech", 80),
    ("umbrella.example", "Umbrella", 3000),
    ("hooli.example", "Hooli", 40),
    ("stark.example", "Stark", 600),
    ("wayne.example", "Wayne", 150),
    ("gmail.com", None, None),
    ("rival.example", "Rival", 400),
]
TITLES = ["VP Sales", "Head of Marketing", "Director of Ops", "Engineer", "Analyst", "Student"]
REJECT_REASONS = ["not_a_fit", "no_budget", "wrong_contact", "duplicate", "bad_timing"]
# Where people come from: (source, medium, campaign, how much it favours buyers). A person's
# first activity carries their campaign; email opens and clicks carry the nurture campaign.
CAMPAIGNS = [
    ("google", "cpc", "brand-search", 3.0),
    ("google", "cpc", "generic-search", 1.0),
    ("linkedin", "paid_social", "abm-enterprise", 1.5),
    ("partner", "referral", "partner-webinar", 2.0),
    ("google", "organic", None, 1.0),
]
NURTURE = {"source": "newsletter", "medium": "email", "campaign": "nurture"}
# Insight tags of the example playbook's vocabulary, by reject reason and by job title.
OBJECTIONS = {"no_budget": "price", "bad_timing": "timing", "wrong_contact": "no_authority"}
PERSONAS = {"VP Sales": "head_of_sales", "Head of Marketing": "marketing_ops"}
MONEY_AND_INSIGHTS = ("tags", "note", "amount")


@dataclass(frozen=True)
class Person:
    """A generated person and how much they really want to buy (unknown to the scoring)."""

    email: str
    hubspot_id: str
    company: str | None
    company_size: int | None
    job_title: str
    intent: float
    anonymous_first: bool


def people(count: int, rng: random.Random) -> list[Person]:
    """`count` distinct people."""
    out = []
    for i in range(count):
        domain, company, size = rng.choice(COMPANIES)
        name = f"{rng.choice(FIRST)}.{i}"
        out.append(
            Person(
                email=f"{name}@{domain}",
                hubspot_id=str(100000 + i),
                company=company,
                company_size=size,
                job_title=rng.choice(TITLES),
                intent=rng.betavariate(1.0, 4.0),
                anonymous_first=rng.random() < 0.15,
            )
        )
    return out


def history(count: int, days: int, seed: int, end: datetime) -> list[dict[str, Any]]:
    """Native lead events (POST /v1/events bodies) for `count` people over `days`, by time."""
    rng = random.Random(seed)
    start = end - timedelta(days=days)
    events: list[dict[str, Any]] = []
    for person in people(count, rng):
        n = 1 + int(rng.expovariate(1 / (2 + 15 * person.intent)))
        first = start + timedelta(seconds=rng.uniform(0, days * 86400 * 0.9))
        moments = sorted(
            first + timedelta(seconds=rng.uniform(0, (end - first).total_seconds() * 0.95))
            for _ in range(n)
        )
        acquired = acquisition(person, seed)
        for k, at in enumerate(moments):
            kind, props = _activity(person.intent, rng)
            identity: dict[str, Any] = {"external_ids": {"hubspot": person.hubspot_id}}
            if not (person.anonymous_first and k < len(moments) // 2):
                identity["email"] = person.email
            attributes: dict[str, Any] = {"job_title": person.job_title}
            if person.company:
                attributes["company"] = person.company
                attributes["company_size"] = person.company_size
            event: dict[str, Any] = {
                "id": f"demo-{seed}-{person.hubspot_id}-{k}",
                "identity": identity,
                "attributes": attributes,
                "activity": {
                    "type": kind,
                    "occurred_at": at.isoformat(),
                    "properties": props,
                },
            }
            touch = acquired if k == 0 else NURTURE if kind.startswith("email_") else None
            if touch:
                event["touch"] = touch
            events.append(event)
    events.sort(key=lambda e: (e["activity"]["occurred_at"], e["id"]))
    return events


def acquisition(person: Person, seed: int) -> dict[str, str]:
    """The campaign that brought the person (its own random stream: the history's is kept)."""
    rng = random.Random(f"{seed}-{person.hubspot_id}-touch")
    weights = [1 + favour * person.intent * 4 for *_, favour in CAMPAIGNS]
    source, medium, campaign, _ = rng.choices(CAMPAIGNS, weights)[0]
    touch = {"source": source, "medium": medium}
    return {**touch, "campaign": campaign} if campaign else touch


def with_insights(
    calls: list[tuple[str, dict[str, Any]]], job_title: str, rng: random.Random
) -> list[tuple[str, dict[str, Any]]]:
    """The verdict's calls with what sales heard (tags, a note) and what deals were worth."""
    out = []
    for action, body in calls:
        body = dict(body)
        if action == "accept" and job_title in PERSONAS:
            body["tags"] = {"persona": [PERSONAS[job_title]]}
        elif action == "reject" and body.get("reason") in OBJECTIONS:
            body["tags"] = {"objection": [OBJECTIONS[body["reason"]]]}
            if rng.random() < 0.3:
                body["note"] = "Asked us to come back next quarter"
        elif action == "convert" and body.get("converted_to") in ("opportunity", "customer"):
            body["amount"] = str(round(rng.uniform(5_000, 60_000), -2))
        out.append((action, body))
    return out


def _activity(intent: float, rng: random.Random) -> tuple[str, dict[str, Any]]:
    roll = rng.random()
    if roll < 0.02 + 0.10 * intent:
        return "demo_request", {}
    if roll < 0.06 + 0.2 * intent:
        return "form_submit", {"form": "contact"}
    if roll < 0.10 + 0.3 * intent:
        return "pricing_page_view", {"path": "/pricing"}
    if roll < 0.16 + 0.3 * intent:
        return "webinar_attended", {}
    if roll < 0.40:
        return rng.choice(["email_open", "email_click"]), {"campaign": "nurture"}
    return "page_view", {"path": rng.choice(["/", "/blog/routing", "/docs", "/pricing"])}


def quality(person: Person) -> float:
    """How good a lead the person really is for sales: intent, and fit (size, seniority)."""
    senior = any(word in person.job_title for word in ("VP", "Head", "Director"))
    large = (person.company_size or 0) >= 200
    return min(1.0, 0.6 * person.intent + 0.25 * senior + 0.15 * large)


def verdict(quality: float, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """What sales does with a handoff of a lead of this quality: feedback calls in order."""
    if rng.random() > 0.1 + 0.8 * quality:
        reason = "not_a_fit" if quality < 0.15 else rng.choice(REJECT_REASONS)
        return [("reject", {"reason": reason})]
    calls: list[tuple[str, dict[str, Any]]] = [("accept", {}), ("contact", {})]
    for stage, chance in (("sql", 0.4 + 0.5 * quality), ("opportunity", 0.6), ("customer", 0.5)):
        if rng.random() > chance:
            break
        calls.append(("convert", {"converted_to": stage}))
    if len(calls) == 2:  # talked to them, no deal now: the handoff closes, the rep is free
        calls.append(("reject", {"reason": rng.choice(["no_budget", "bad_timing"])}))
    return calls


def seed_main(
    leads: int, days: int, seed: int, ingest_url: str, handoff_url: str, api_key: str | None
) -> int:
    """Entry point of `leadrouter demo seed`."""
    return asyncio.run(_seed(leads, days, seed, ingest_url, handoff_url, api_key))


async def _seed(
    leads: int, days: int, seed: int, ingest_url: str, handoff_url: str, api_key: str | None
) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is noise here
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    events = history(leads, days, seed, datetime.now(UTC))
    crowd = people(leads, random.Random(seed))
    qualities = {p.email: quality(p) for p in crowd}
    titles = {p.email: p.job_title for p in crowd}
    worth = random.Random(seed + 2)
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        for i in range(0, len(events), 500):
            response = await client.post(f"{ingest_url}/v1/events", json=events[i : i + 500])
            if response.status_code != 202:
                print(f"ingest answered {response.status_code}: {response.text}", file=sys.stderr)
                return 1
            print(
                f"\r[seed] sent {min(i + 500, len(events))}/{len(events)} events",
                end="",
                file=sys.stderr,
                flush=True,
            )
        print(file=sys.stderr)
        rng = random.Random(seed + 1)
        judged: set[str] = set()
        quiet_since = time.monotonic()
        # Scoring and handoff catch up with the history for a while: judge until it is quiet.
        while time.monotonic() - quiet_since < 15:
            page = (
                await client.get(
                    f"{handoff_url}/v1/handoffs", params={"status": "assigned", "limit": 1000}
                )
            ).json()
            fresh = [h for h in page if h["handoff_id"] not in judged]
            for h in fresh:
                judged.add(h["handoff_id"])
                email = h.get("email") or ""
                calls = verdict(qualities.get(email, 0.1), rng)
                for action, body in with_insights(calls, titles.get(email, ""), worth):
                    url = f"{handoff_url}/v1/handoffs/{h['handoff_id']}/{action}"
                    given = {"rep_id": h.get("rep_id"), **body}
                    answer = await client.post(url, json=given)
                    if answer.status_code == 422 and ("tags" in body or "amount" in body):
                        # a playbook without these tags or a reporting currency: plain feedback
                        plain = {k: v for k, v in given.items() if k not in MONEY_AND_INSIGHTS}
                        await client.post(url, json=plain)
            if fresh:
                quiet_since = time.monotonic()
                print(f"\r[seed] feedback on {len(judged)} handoffs", end="", file=sys.stderr)
            await asyncio.sleep(1)
        print(
            f"[seed] {len(events)} events from {leads} people; feedback on {len(judged)} handoffs",
            file=sys.stderr,
        )
    return 0
