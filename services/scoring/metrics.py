"""The scoring service's Prometheus metrics (bounded labels: no lead keys or emails)."""

from typing import Any

from prometheus_client import Counter, Histogram

TRANSITIONS = Counter(
    "leadrouter_scoring_transitions_total", "Lifecycle transitions emitted", ["transition"]
)
ACTIVITIES = Counter(
    "leadrouter_scoring_activities_total",
    "Events scoring applied, by type (activity types no playbook rule names are counted as "
    "other; sales outcomes as sales_recycled, sales_converted) and outcome (scored, no_points, "
    "merged, applied, unchanged)",
    ["type", "outcome"],
)
SCORES = Histogram(
    "leadrouter_scoring_lead_score",
    "Lead totals after each update",
    buckets=(-50, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 125, 150, 200),
)


_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def labelled(metric: Counter, *values: str) -> Any:
    """`metric.labels(*values)`, looked up once: the lookup cost more than the count (per event
    and per transition). Label values are bounded (no lead keys), so the cache is too."""
    key = (id(metric), values)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*values)
    return child
