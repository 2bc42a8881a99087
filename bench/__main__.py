"""`make bench`: every scenario against the real services, each with a same-run baseline.

Runs on the Kafka and PostgreSQL named by LEADROUTER_KAFKA_PORT and LEADROUTER_POSTGRES_PORT
(defaults: the infra scripts' 9092 and 5432), in databases and topic namespaces of its own.
Writes .local/bench-report/report.md (Markdown with PNG plots) and results.json.
"""

import argparse
import asyncio
import importlib
import os
import shutil
import sys
import time

from bench.env import REPORT_DIR, drop_databases, machine, progress
from bench.report import write
from bench.result import Result
from harness.processes import PROFILE_DIR

SCENARIOS = [
    "history",
    "scoring",
    "ingest",
    "transactions",
    "speed_to_lead",
    "timers",
    "backtest",
    "scale",
]


async def main(names: list[str], repeat: int, quick: bool) -> dict[str, list[Result]]:
    runs: dict[str, list[Result]] = {}
    try:
        for name in names:
            if os.environ.get(PROFILE_DIR):  # one folder of profiles per scenario
                os.environ[PROFILE_DIR] = str(REPORT_DIR / "profiles" / name)
            module = importlib.import_module(f"bench.scenarios.{name}")
            for attempt in range(repeat):
                progress(f"{name}: run {attempt + 1} of {repeat}")
                started = time.perf_counter()
                result = await module.run(quick)
                runs.setdefault(name, []).append(result)
                for figure in result.figures:
                    ratio = f" (ratio {figure.ratio:.2f})" if figure.ratio else ""
                    progress(f"  {figure.name}: {figure.value:,.1f} {figure.unit}{ratio}")
                progress(f"  {name} took {time.perf_counter() - started:.0f}s")
    finally:
        await drop_databases()
    return runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs, once each")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each scenario")
    parser.add_argument(
        "--only", "--scenario", nargs="*", choices=SCENARIOS, help="some scenarios only"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run every process started under py-spy; the report says where each one's CPU "
        "went (the sampling slows the figures: profile and measure in separate runs)",
    )
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    shutil.rmtree(REPORT_DIR / "profiles", ignore_errors=True)
    if args.profile:
        os.environ[PROFILE_DIR] = str(REPORT_DIR / "profiles")
    about = machine()
    runs = asyncio.run(main(args.only or SCENARIOS, repeat, args.quick))
    report = write(runs, about, REPORT_DIR, "python -m bench " + " ".join(sys.argv[1:]))
    progress(f"report: {report}")
