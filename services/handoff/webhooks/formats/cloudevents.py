"""The event as it is on Kafka: CloudEvents 1.0 structured JSON (the HTTP binding's mode)."""

from shared.events import CONTENT_TYPE as CONTENT_TYPE
from shared.events import CloudEvent


def render(event: CloudEvent) -> bytes:
    """The CloudEvent in the JSON encoding leadrouter publishes on the handoff topic."""
    return event.to_bytes()
