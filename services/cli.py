"""The `leadrouter` command line: one subcommand per service, plus operator tools."""

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import import_module

from shared.logs import configure_logging
from shared.settings import get_settings

SERVICES = {
    "ingest": (
        "services.ingest.app",
        "ingest_port",
        "HTTP front door (port 8000): takes lead events and webhooks, publishes them to "
        "Kafka and answers 202 once Kafka acknowledged them.",
    ),
    "scoring": (
        "services.scoring.app",
        "scoring_port",
        "Consumes lead events, keeps explainable scores and stages in PostgreSQL (port 8001 "
        "serves them) and emits lifecycle transitions such as became_mql.",
    ),
    "handoff": (
        "services.handoff.app",
        "handoff_port",
        "Consumes lifecycle transitions, routes qualified leads to sales reps and publishes "
        "handoff events for sales tools (port 8002).",
    ),
}


def _serve(service: str, port: int | None) -> int:
    import uvicorn

    from shared.playbook import PlaybookError

    module, port_field, _ = SERVICES[service]
    settings = get_settings()
    build_app: Callable[..., object] = import_module(module).build_app
    try:
        app = build_app(settings)
    except PlaybookError as exc:
        print(f"leadrouter {service}: refusing to start: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=port or getattr(settings, port_field),
        # uvloop and httptools: about 1.5-2x the requests per second of asyncio and h11.
        loop="uvloop",
        http="httptools",
        log_config=None,  # keep the JSON logging configured in main()
        access_log=False,  # request lines would carry emails from query strings
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
    return 0


def _playbook_check(path: str) -> int:
    from shared.playbook import PlaybookError, load_playbook, summary

    try:
        playbook = load_playbook(path)
    except PlaybookError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{path}: valid playbook")
    print(summary(playbook))
    return 0


def _migrate() -> int:
    from shared.migrate import upgrade

    upgrade(get_settings().database_url)
    print("database is at the newest migration")
    return 0


def _forget(who: str) -> int:
    import asyncio
    import getpass
    import uuid

    from services.scoring.app import scoring_handler
    from shared.db import make_engine, make_sessionmaker
    from shared.playbook import load_playbook

    settings = get_settings()
    # A bare address is an email; anything else is a lead key or alias (hubspot:123, ...).
    name = f"email:{who.strip().lower()}" if "@" in who and ":" not in who else who.strip()
    handler = scoring_handler(settings, load_playbook(settings.playbook))

    async def forget() -> int:
        engine = make_engine(settings.database_url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session, session.begin():
                events = await handler.erase(
                    session,
                    [name],
                    actor=f"cli:{getpass.getuser()}",
                    cause=f"erasure:{uuid.uuid4()}",
                )
        finally:
            await engine.dispose()
        return len(events)

    erased = asyncio.run(forget())
    if not erased:
        print("no lead has that email, key or alias", file=sys.stderr)
        return 1
    print(
        f"erased {erased} lead(s); the scoring service publishes leadrouter.lifecycle.erased "
        "and handoff anonymises the handoffs when it reads it"
    )
    return 0


def _watch(topic: str, from_beginning: bool) -> int:
    import asyncio
    import json
    import uuid

    from aiokafka import AIOKafkaConsumer

    from shared.kafka import client_options

    async def watch() -> None:
        consumer = AIOKafkaConsumer(
            topic,
            **client_options(get_settings()),
            group_id=f"leadrouter-watch-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=False,
        )
        await consumer.start()
        print(f"watching {topic} (Ctrl-C stops)", file=sys.stderr)
        try:
            async for record in consumer:
                try:
                    value = json.loads(record.value)
                except ValueError:
                    value = repr(record.value)
                print(
                    json.dumps(
                        {
                            "partition": record.partition,
                            "offset": record.offset,
                            "key": (record.key or b"").decode(errors="replace"),
                            "event": value,
                        }
                    ),
                    flush=True,
                )
        finally:
            await consumer.stop()

    try:
        asyncio.run(watch())
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `leadrouter` command."""
    parser = argparse.ArgumentParser(
        prog="leadrouter",
        description="Event-driven lead routing. Settings come from LEADROUTER_* environment "
        "variables (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, port_field, help_text) in SERVICES.items():
        sub = commands.add_parser(name, help=f"run the {name} service", description=help_text)
        sub.add_argument(
            "--port", type=int, help=f"HTTP port (default: LEADROUTER_{port_field.upper()})"
        )
        if name == "scoring":
            sub.add_argument(
                "action",
                nargs="?",
                choices=["replay", "fold-legacy-hits"],
                help="replay: rebuild the leads projection from the start of the topics "
                "(stop the service first); fold-legacy-hits: fold the raw awards migration "
                "0007 kept into the leads' tallies with LEADROUTER_PLAYBOOK (once, after "
                "migrate)",
            )
            sub.add_argument(
                "--publish", action="store_true", help="replay: publish re-derived lifecycle events"
            )
    commands.add_parser(
        "migrate",
        help="apply database migrations and exit",
        description="Apply the alembic migrations to LEADROUTER_DATABASE_URL.",
    )
    watch = commands.add_parser(
        "watch",
        help="print a topic's events as JSON lines",
        description="Print each record of a topic, as a sales tool sees it.",
    )
    watch.add_argument("topic", help="e.g. leadrouter.handoffs.v1")
    watch.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    forget = commands.add_parser(
        "forget",
        help="erase a lead's personal data (as DELETE /v1/leads/{id})",
        description="Erase a person: profile, aliases, score history and timers; handoffs are "
        "anonymised; leadrouter.lifecycle.erased is published. Recorded in the audit trail.",
    )
    forget.add_argument("who", help="an email address, a lead key or an alias (hubspot:123)")
    playbook = commands.add_parser(
        "playbook", help="playbook tools", description="Validate and summarise playbooks."
    )
    playbook_commands = playbook.add_subparsers(dest="playbook_command", required=True)
    check = playbook_commands.add_parser("check", help="validate a playbook and print a summary")
    check.add_argument("file")
    backtest = playbook_commands.add_parser(
        "backtest",
        help="run a candidate playbook and the current one over recorded history",
        description="Read the lead and handoff events from Kafka, run both playbooks through "
        "the scoring and routing cores at event time, and write a side-by-side report.",
    )
    backtest.add_argument("candidate", help="the playbook you consider")
    backtest.add_argument("--baseline", help="the current playbook (default: LEADROUTER_PLAYBOOK)")
    backtest.add_argument("--since", type=_moment, help="report from this date (ISO 8601)")
    backtest.add_argument("--until", type=_moment, help="report up to this date (ISO 8601)")
    backtest.add_argument("--out", default="backtest-report", help="report folder")
    worker = playbook_commands.add_parser(
        "backtest-worker",
        help="run the backtests queued over HTTP (POST /v1/playbook/backtests on handoff)",
        description="Claim queued backtests one at a time, run them against "
        "LEADROUTER_PLAYBOOK and store each report in its job; Ctrl-C stops.",
    )
    worker.add_argument("--once", action="store_true", help="stop when no job is waiting")
    calibrate = playbook_commands.add_parser(
        "calibrate",
        help="acceptance by score band and by fit band from sales feedback, and a suggested "
        "MQL threshold and fit floor (min_fit)",
    )
    calibrate.add_argument("--since", type=_moment, help="only handoffs from this date")
    calibrate.add_argument(
        "--accept-goal", type=float, default=0.6, help="share of MQLs sales should accept"
    )
    calibrate.add_argument("--weekly-capacity", type=int, help="at most this many handoffs a week")
    calibrate.add_argument("--out", default="calibration-report", help="report folder")
    report = commands.add_parser(
        "report", help="reports", description="Write the smarketing meeting's page."
    )
    report_commands = report.add_subparsers(dest="report_command", required=True)
    weekly = report_commands.add_parser(
        "weekly",
        help="goals, funnel against last week, SLAs both ways, reject reasons (HTML, Markdown)",
    )
    weekly.add_argument("--week-of", type=_moment, help="a day of the week (default: this week)")
    weekly.add_argument("--at", type=_moment, help="as things stood at this time (default: now)")
    weekly.add_argument("--out", default="weekly-report", help="report folder")
    demo = commands.add_parser("demo", help="demo data", description="Generate demo history.")
    demo_commands = demo.add_subparsers(dest="demo_command", required=True)
    seed = demo_commands.add_parser(
        "seed",
        help="fill a running system with a realistic generated history and sales feedback",
    )
    seed.add_argument("--leads", type=int, default=500)
    seed.add_argument("--days", type=int, default=28)
    seed.add_argument("--seed", type=int, default=7)
    seed.add_argument("--ingest-url", default="http://127.0.0.1:8000")
    seed.add_argument("--handoff-url", default="http://127.0.0.1:8002")
    seed.add_argument("--api-key", help="API key for ingest and feedback (if keys are configured)")

    keys_parser = commands.add_parser(
        "keys", help="API keys", description="Mint API keys with scopes (docs/security.md)."
    )
    keys_commands = keys_parser.add_subparsers(dest="keys_command", required=True)
    from services import keys

    keys.add_arguments(
        keys_commands.add_parser(
            "new", help="mint a key: prints it once and its LEADROUTER_API_KEYS_FILE line"
        )
    )

    args = parser.parse_args(argv)
    if args.command == "keys":
        return keys.run(args)
    configure_logging(args.command, get_settings().log_level)
    if args.command == "scoring" and args.action == "replay":
        from services.scoring.replay import main as replay

        return replay(get_settings(), args.publish)
    if args.command == "scoring" and args.action == "fold-legacy-hits":
        from services.scoring.legacy_hits import main as fold_legacy_hits

        return fold_legacy_hits(get_settings())
    if args.command in SERVICES:
        return _serve(args.command, args.port)
    if args.command == "migrate":
        return _migrate()
    if args.command == "watch":
        return _watch(args.topic, args.from_beginning)
    if args.command == "forget":
        return _forget(args.who)
    if args.command == "report":
        from services.handoff.report import report_main

        return report_main(get_settings(), args.out, args.week_of, args.at)
    if args.command == "demo":
        from services.backtest.demo import seed_main

        return seed_main(
            args.leads, args.days, args.seed, args.ingest_url, args.handoff_url, args.api_key
        )
    if args.playbook_command == "backtest":
        from services.backtest.run import backtest_main

        return backtest_main(
            get_settings(), args.candidate, args.baseline, args.since, args.until, args.out
        )
    if args.playbook_command == "backtest-worker":
        from services.backtest.worker import main as backtest_worker

        return backtest_worker(get_settings(), args.once)
    if args.playbook_command == "calibrate":
        from services.backtest.run import calibrate_main

        return calibrate_main(
            get_settings(), args.since, args.accept_goal, args.weekly_capacity, args.out
        )
    return _playbook_check(args.file)


def _moment(text: str) -> datetime:
    """An ISO 8601 date or time; a date or a time without a zone is taken as UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


if __name__ == "__main__":
    sys.exit(main())
