"""What scoring's live handler and its replay both name, without importing the handler's module
(and the web framework with it): the replay's command starts faster without them."""

from shared.errors import Invalid

RELAY = "scoring"  # the outbox relay is named after its service
RETIER = "scoring.retier"


class UnprocessableEvent(Invalid):
    """An event that decodes as CloudEvents but that scoring cannot use (dead-lettered at once)."""
