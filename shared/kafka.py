"""Kafka plumbing: topic names, the idempotent producer, topic creation at start-up."""

import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from shared.settings import CommonSettings

log = logging.getLogger(__name__)

LEAD_EVENTS = "lead-events"
LEAD_LIFECYCLE = "lead-lifecycle"
HANDOFFS = "handoffs"
SALES_FEEDBACK = "sales-feedback"
SALES_INSIGHTS = "sales-insights"
GOALS = "goals"  # a goal's status changed (keyed by the goal id, not a lead)
ALL_TOPICS = (LEAD_EVENTS, LEAD_LIFECYCLE, HANDOFFS, SALES_FEEDBACK, SALES_INSIGHTS, GOALS)


def dlq(topic: str) -> str:
    """The dead-letter topic of a topic."""
    return f"{topic}.dlq"


def client_options(settings: CommonSettings) -> dict[str, Any]:
    """Where and how every Kafka client (producer, consumer, admin) connects: TLS and SASL."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        # Verifies the broker's certificate and host name (the system CAs without a cafile).
        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            password=settings.secret("kafka_ssl_key_password"),
        )
    if protocol.startswith("SASL_"):
        username = settings.secret("kafka_sasl_username")
        password = settings.secret("kafka_sasl_password")
        if not username or not password:
            raise ValueError(
                f"LEADROUTER_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                "LEADROUTER_KAFKA_SASL_USERNAME and LEADROUTER_KAFKA_SASL_PASSWORD_FILE"
            )
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=username,  # aiokafka takes SCRAM's credentials here too
            sasl_plain_password=password,
        )
    return options


def make_producer(settings: CommonSettings, *, linger_ms: int = 2) -> AIOKafkaProducer:
    """The one producer shape: acks from all replicas, idempotent, so retries never duplicate.

    An outbox relay passes `linger_ms=0`: it adds its whole batch before the sender runs (no
    send yields), so the records are batched anyway and lingering only delays each hop.
    """
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        # A request of 100 events is ~50 KB: one batch per partition instead of four.
        max_batch_size=131072,
        request_timeout_ms=int(settings.kafka_publish_timeout_s * 1000),
        client_id="leadrouter",
    )


async def ensure_topics(settings: CommonSettings) -> None:
    """Create every leadrouter topic and its DLQ if missing; existing topics are left alone."""
    names = [settings.topic(t) for t in ALL_TOPICS]
    names += [dlq(n) for n in names]
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            log.info("creating topics %s", missing)
            try:
                await admin.create_topics(
                    [NewTopic(n, settings.topic_partitions, 1) for n in missing]
                )
            except TopicAlreadyExistsError:
                pass  # another service created them at the same moment
    finally:
        await admin.close()


async def kafka_reachable(settings: CommonSettings) -> bool:
    """True when the cluster answers a metadata request."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        await admin.close()
