"""The event contract: an AsyncAPI 3.0 document built from the pydantic models the code uses.

Nothing here is written twice: channels come from the topic constants, message types from
the type catalogue in shared/events.py, payload schemas from the data models, and every
example is built through those models (so an example that no longer validates fails at once).

One concern a module: `examples` (an example event of each type), `topics` (the catalogue:
topics, types, who writes and reads them), `document` (the AsyncAPI document),
`compatibility` (breaking changes against the released document), `markdown` (the rendered
docs/asyncapi.md). `python -m shared.asyncapi` prints the document; `--markdown` prints
docs/asyncapi.md.
"""

from shared.asyncapi.compatibility import breaking_changes
from shared.asyncapi.document import (
    DEAD_LETTER,
    SCHEMA_REF,
    asyncapi_document,
    default_document,
)
from shared.asyncapi.examples import EXAMPLE_LEAD, EXAMPLE_TIME
from shared.asyncapi.markdown import render_markdown
from shared.asyncapi.topics import (
    CONTRACT_VERSION,
    ORDERING,
    TOPIC_VERSION,
    TOPICS,
    WHEN,
    Topic,
    example_event,
    message_name,
    topic_of,
)

__all__ = [
    "CONTRACT_VERSION",
    "DEAD_LETTER",
    "EXAMPLE_LEAD",
    "EXAMPLE_TIME",
    "ORDERING",
    "SCHEMA_REF",
    "TOPICS",
    "TOPIC_VERSION",
    "WHEN",
    "Topic",
    "asyncapi_document",
    "breaking_changes",
    "default_document",
    "example_event",
    "message_name",
    "render_markdown",
    "topic_of",
]
