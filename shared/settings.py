"""Settings read from LEADROUTER_* environment variables: a common base and one class a service.

Each service is built with its own class (IngestSettings, ScoringSettings, HandoffSettings)
on the common base; `Settings` has every knob, for the command line, the tests and the tools
that run several services. The variable names are the same in every class.
"""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class CommonSettings(BaseSettings):
    """What every service reads: Kafka, PostgreSQL, topics, the consumer, outbox and timer
    loops, credentials, logging. The field name upper-cased with LEADROUTER_ is its variable."""

    model_config = SettingsConfigDict(env_prefix="LEADROUTER_", extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client connects (SASL_SSL in production)"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user (the Kafka principal)")
    kafka_sasl_username_file: Path | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = Field(
        None, description="File holding the SASL password (preferred to the variable)"
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM CA bundle that signed the brokers' certificates (SSL, SASL_SSL)"
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="PEM client certificate, for brokers that require mutual TLS"
    )
    kafka_ssl_keyfile: Path | None = Field(None, description="PEM private key of the certfile")
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_key_password_file: Path | None = None
    kafka_publish_timeout_s: float = Field(
        10.0, gt=0, description="How long ingest waits for Kafka's ack before answering 503"
    )
    database_url: str = Field(
        "postgresql+asyncpg://leadrouter:leadrouter@127.0.0.1:5432/leadrouter",
        description="SQLAlchemy async URL of the PostgreSQL database",
    )
    playbook: Path = Field(
        REPO_ROOT / "deploy" / "playbook.example.yaml",
        description="Path to the playbook YAML (taxonomy, scoring, roster)",
    )
    topic_namespace: str = Field(
        "leadrouter",
        description="Prefix of every topic name, e.g. leadrouter.lead-events.v1",
    )
    topic_partitions: int = Field(3, ge=1, description="Partitions of topics created at start-up")
    host: str = Field("127.0.0.1", description="Interface the HTTP servers bind to")
    consumer_batch_max: int = Field(500, ge=1, description="Most records one transaction takes")
    consumer_poll_timeout_ms: int = Field(500, ge=1)
    consumer_max_retries: int = Field(
        3, ge=0, description="Retries of a failing record before it goes to the DLQ"
    )
    outbox_batch_max: int = Field(500, ge=1)
    outbox_idle_poll_s: float = Field(
        0.5, gt=0, description="Outbox relay poll interval when no in-process wake-up arrives"
    )
    outbox_max_attempts: int = Field(
        3, ge=1, description="Permanent publish failures of one outbox row before it is parked"
    )
    outbox_stuck_after_s: float = Field(
        60.0, gt=0, description="Readiness says degraded once a relay fails this long"
    )
    timer_max_attempts: int = Field(
        5, ge=1, description="Failed firings of one timer before it is parked"
    )
    timer_retry_base_s: float = Field(
        2.0, gt=0, description="First retry delay of a failed timer (doubles each attempt)"
    )
    dedup_window_s: int = Field(
        7 * 24 * 3600,
        ge=60,
        description="How long a consumer remembers processed event ids (redeliveries and "
        "platform retries within it are dropped); older ids are pruned",
    )
    consumer_lag_interval_s: float = Field(
        5.0, gt=0, description="How often consumer lag is measured (end minus stored offsets)"
    )
    api_keys_file: Path | None = Field(
        None,
        description="File of `name:sha256-hex-of-key:scope,scope` lines, the API keys of every "
        "service; unset, the services are open and refuse to bind to anything but loopback",
    )
    jwt_jwks_url: str | None = Field(
        None,
        description="Also accept OAuth2 bearer JWTs signed by the keys at this JWKS URL "
        "(scopes from the scope/scp claim)",
    )
    jwt_issuer: str | None = Field(None, description="Required `iss` of accepted JWTs")
    jwt_audience: str | None = Field(None, description="Required `aud` of accepted JWTs")
    log_level: str = "INFO"
    shutdown_timeout_s: int = Field(
        20, ge=1, description="On SIGTERM: time to finish the batch in hand and flush the outbox"
    )

    def secret(self, name: str) -> str | None:
        """A secret from LEADROUTER_<NAME> or the file named by LEADROUTER_<NAME>_FILE."""
        value: SecretStr | str | None = getattr(self, name)
        if value is not None:
            return value.get_secret_value() if isinstance(value, SecretStr) else value
        path: Path | None = getattr(self, f"{name}_file")
        return path.read_text().strip() if path else None

    def consumer_group(self, service: str) -> str:
        """The consumer group of a service, e.g. leadrouter-scoring (namespaced like topics)."""
        return f"{self.topic_namespace}-{service}"

    def topic(self, name: str) -> str:
        """The full topic name for a short name such as 'lead-events'."""
        return f"{self.topic_namespace}.{name}.v1"


class IngestSettings(CommonSettings):
    """The ingest service: its port, the platforms' secrets, the limits at the door, publishing."""

    ingest_port: int = 8000
    hubspot_client_secret: SecretStr | None = None
    hubspot_client_secret_file: Path | None = None
    mautic_webhook_secret: SecretStr | None = None
    mautic_webhook_secret_file: Path | None = None
    segment_shared_secret: SecretStr | None = None
    segment_shared_secret_file: Path | None = None
    marketo_token: SecretStr | None = None
    marketo_token_file: Path | None = None
    marketo_timezone: str = Field(
        "UTC", description="Time zone of Marketo's {{system.dateTime}} (your instance's)"
    )
    public_base_url: str | None = Field(
        None,
        description="The URL platforms call, e.g. https://leads.example.com, when a proxy sits "
        "in front of ingest (HubSpot signs the full URL)",
    )
    webhook_max_age_s: int = Field(300, ge=1, description="Oldest signed timestamp accepted")
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    max_events_per_request: int = Field(1000, ge=1)
    max_event_bytes: int = Field(
        65536, ge=1024, le=524288, description="Largest lead event ingest publishes (encoded)"
    )
    max_string_chars: int = Field(8192, ge=64, description="Longest string in a lead event")
    max_attributes: int = Field(100, ge=1, description="Most attributes in one lead event")
    max_properties: int = Field(100, ge=1, description="Most activity properties in one event")
    max_json_depth: int = Field(32, ge=4, le=200, description="Deepest JSON nesting in a body")
    clock_skew_s: float = Field(
        300.0, ge=0, description="How far in the future an event's time may be (ingest's clock)"
    )
    ingest_kafka_producers: int = Field(
        4,
        ge=1,
        le=64,
        description="Transactional producers; they take turns, so each rests between its "
        "transactions (one reused at once waits 20 ms on the broker's CONCURRENT_TRANSACTIONS)",
    )
    ingest_transactions_in_flight: int = Field(
        2,
        ge=1,
        le=64,
        description="Most group-commit transactions in flight at once: fewer, larger "
        "transactions under load (at most LEADROUTER_INGEST_KAFKA_PRODUCERS count)",
    )
    ingest_transaction_max_records: int = Field(
        5000,
        ge=1,
        description="Most records one group-commit transaction takes (a larger request is one "
        "transaction of its own)",
    )
    kafka_transactions: bool = Field(
        True,
        description="Publish requests in Kafka transactions (concurrent requests share one: group "
        "commit), aborted on a 503, so nothing of a refused request is ever read by consumers",
    )
    # --- the Segment-spec Tracking API (services/ingest/tracking.py) ---
    tracking_max_message_bytes: int = Field(
        32 * 1024, ge=1024, description="Largest Tracking API message (Segment's 32 KB)"
    )
    tracking_max_batch_bytes: int = Field(
        500 * 1024, ge=1024, description="Largest Tracking API body, decompressed (500 KB)"
    )
    tracking_cors_origins: str = Field(
        "",
        description="Comma-separated origins whose pages may call the Tracking API from a "
        "browser (analytics.js), e.g. https://www.acme.example; `*` for any; empty: none",
    )
    # --- end of the Tracking API ---
    rate_limit_per_s: float = Field(200.0, gt=0, description="Requests per second per source")
    rate_limit_burst: int = Field(400, ge=1, description="Requests a source may send at once")


class ScoringSettings(CommonSettings):
    """The scoring service."""

    scoring_port: int = 8001


class HandoffSettings(CommonSettings):
    """The handoff service (and its board, which reads scores from scoring's API)."""

    handoff_port: int = 8002
    webhook_delivery_retention_s: int = Field(
        14 * 24 * 3600,
        ge=60,
        description="How long a finished outbound webhook delivery (delivered or dead) is kept; "
        "older rows are deleted by the webhook consumer's upkeep",
    )
    scoring_url: str = Field(
        "http://127.0.0.1:8001",
        description="Where the handoff board reads a lead's score and explanation (scoring's API)",
    )
    goals_check_interval_s: float = Field(
        60.0, gt=0, description="How often handoff evaluates the playbook's goals (docs/goals.md)"
    )


class Settings(IngestSettings, ScoringSettings, HandoffSettings):
    """Every knob of leadrouter (the command line, tests, and tools that run every service)."""


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
