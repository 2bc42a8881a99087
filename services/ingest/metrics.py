"""Ingest's Prometheus metrics, all in one place (names are part of the external contract)."""

from functools import cache

from prometheus_client import Counter, Histogram

from shared.metrics import SECONDS_BUCKETS

REQUESTS = Counter(
    "leadrouter_ingest_requests_total",
    "Requests by source and outcome (accepted, or the reason they were refused)",
    ["source", "outcome"],
)
EVENTS = Counter(
    "leadrouter_ingest_events_total",
    "Events by source, platform event type and outcome (accepted, ignored, dead_lettered, invalid)",
    ["source", "type", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "leadrouter_ingest_request_duration_seconds",
    "Time from receiving a request to answering it",
    ["source"],
    buckets=SECONDS_BUCKETS,
)
PUBLISH_SECONDS = Histogram(
    "leadrouter_ingest_kafka_publish_seconds",
    "Time from sending a request's events to Kafka's acknowledgement of all of them",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TRANSACTION_REQUESTS = Histogram(
    "leadrouter_ingest_transaction_requests",
    "Requests that shared one Kafka transaction (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
TRANSACTION_RECORDS = Histogram(
    "leadrouter_ingest_transaction_records",
    "Records in one Kafka transaction (group commit)",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)

# Request outcome by the status of the refusal; anything unexpected (a 500) is "error".
OUTCOMES = {
    400: "invalid_json",
    401: "unauthorized",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "kafka_unavailable",
}


# The labelled children, looked up once: labels() takes a lock and builds a key on every call.
# Sources (API key names, platforms) and outcomes are few, so the caches stay small.
@cache
def requests_total(source: str, outcome: str) -> Counter:
    """REQUESTS for one source and outcome."""
    return REQUESTS.labels(source, outcome)


@cache
def request_seconds(source: str) -> Histogram:
    """REQUEST_SECONDS for one source."""
    return REQUEST_SECONDS.labels(source)


@cache
def events_total(source: str, kind: str, outcome: str) -> Counter:
    """EVENTS for one source, event kind (bounded: unknown kinds are "other") and outcome."""
    return EVENTS.labels(source, kind, outcome)
