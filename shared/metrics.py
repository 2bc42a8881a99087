"""Prometheus metrics shared by every service; service-specific ones live with their service."""

from prometheus_client import Counter, Gauge, Histogram, Info, disable_created_metrics

# `_created` series double the scrape size and no dashboard or alert of ours reads them.
disable_created_metrics()

# Buckets for work that takes milliseconds to seconds (a request, a consumer batch): one set,
# so dashboards compare them bucket for bucket.
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

BUILD_INFO = Info("leadrouter_build", "Version of the running leadrouter service")

CONSUMED_EVENTS = Counter(
    "leadrouter_consumer_events_total",
    "Events a consumer took from Kafka, by outcome (processed, duplicate, dead_lettered)",
    ["consumer", "topic", "outcome"],
)
CONSUMER_BATCH_SIZE = Histogram(
    "leadrouter_consumer_batch_size",
    "Records handled in one consumer transaction",
    ["consumer"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
CONSUMER_BATCH_SECONDS = Histogram(
    "leadrouter_consumer_batch_duration_seconds",
    "Time to process and commit one consumer batch",
    ["consumer"],
    buckets=SECONDS_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "leadrouter_consumer_lag_messages",
    "Records between the consumer's position and the partition's end",
    ["consumer", "topic", "partition"],
)
OUTBOX_PUBLISHED = Counter(
    "leadrouter_outbox_published_total",
    "Outbox rows published to Kafka",
    ["relay", "topic"],
)
OUTBOX_BACKLOG = Gauge(
    "leadrouter_outbox_backlog_rows",
    "Outbox rows not yet published (counted by the relay at most once a second)",
    ["relay"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "leadrouter_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row (0 when empty; read with the backlog's count)",
    ["relay"],
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "leadrouter_outbox_publish_failures_total",
    "Outbox publish attempts that failed, by kind: transient (broker unreachable, retried "
    "without limit) or permanent (the broker refuses this record for good)",
    ["relay", "kind"],
)
OUTBOX_PARKED = Gauge(
    "leadrouter_outbox_parked_rows",
    "Outbox rows set aside after permanent publish failures (see the outbox's last_error)",
    ["relay"],
)
OUTBOX_STUCK_SECONDS = Gauge(
    "leadrouter_outbox_stuck_seconds",
    "How long the relay has been failing to publish without progress (0 when healthy)",
    ["relay"],
)
TIMER_LATENESS = Histogram(
    "leadrouter_timer_lateness_seconds",
    "How long after its due time a timer fired",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
TIMER_FAILURES = Counter(
    "leadrouter_timer_failures_total",
    "Timer firings whose handler raised (or that had no handler); retried with backoff",
    ["kind"],
)
TIMERS_PARKED = Gauge(
    "leadrouter_timers_parked",
    "Timers set aside after their last allowed failed firing, by kind",
    ["kind"],
)
PROCESSED_IDS_PRUNED = Counter(
    "leadrouter_consumer_processed_ids_pruned_total",
    "Processed event ids deleted after the dedup window",
    ["consumer"],
)
GC_PAUSE_SECONDS = Histogram(
    "leadrouter_gc_pause_seconds",
    "How long one garbage collection held the event loop, by generation (2: a full collection)",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
GC_CPU_SECONDS = Counter(
    "leadrouter_gc_cpu_seconds_total",
    "CPU the garbage collections took, by generation (their pause less the time the process "
    "waited for a core)",
    ["generation"],
)
