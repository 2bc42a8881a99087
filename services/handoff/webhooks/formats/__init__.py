"""Body formats of outbound webhooks, one module per format, each exporting the same names.

A format module has `CONTENT_TYPE` and `render(event: CloudEvent) -> bytes`; adding a format
is adding a module here and its name to the playbook's `format` choices.
"""

from types import ModuleType

from services.handoff.webhooks.formats import cloudevents, slack

FORMATS: dict[str, ModuleType] = {"cloudevents": cloudevents, "slack": slack}
