"""docs/asyncapi.md: the document rendered for people."""

import json
from typing import Any

from shared.asyncapi.document import DEAD_LETTER
from shared.events import (
    CONTENT_TYPE,
)


def render_markdown(document: dict[str, Any]) -> str:
    """docs/asyncapi.md: every channel, every message type with its fields and an example."""
    schemas = document["components"]["schemas"]
    messages = document["components"]["messages"]
    info = document["info"]
    out = [
        "# leadrouter event contract",
        "",
        f"Generated from `shared/asyncapi/` (AsyncAPI {document['asyncapi']}, contract "
        f"{info['version']}); do not edit by hand: `python -m shared.asyncapi --markdown > "
        "docs/asyncapi.md`. The machine-readable document is served by every service at "
        "`GET /asyncapi.json`; the released one is `contracts/asyncapi.v1.json`.",
        "",
        info["description"],
        "",
        "Kafka record: key = the lead key; value = the event; header `content-type: "
        f"{CONTENT_TYPE}`.",
        "",
        "## The envelope",
        "",
        *_fields_table(schemas["CloudEvent"], schemas),
        "",
    ]
    for channel in document["channels"].values():
        out += [f"## `{channel['address']}`: {channel['title']}", "", channel["description"], ""]
        for name in channel["messages"]:
            message = messages[name]
            out += [f"### `{message['name']}`", "", message["summary"], ""]
            if "description" in message:
                out += [message["description"], ""]
            if name == DEAD_LETTER:
                out += _fields_table(message["headers"], schemas, "header") + [""]
                continue
            data_ref = message["payload"]["allOf"][1]["properties"]["data"]["$ref"]
            model = data_ref.rsplit("/", 1)[-1]
            if name == next(iter(channel["messages"])):
                out += [f"`data` ({model}):", "", *_fields_table(schemas[model], schemas), ""]
            else:
                out += [f"`data`: {model}, as above.", ""]
            example = message["examples"][0]["payload"]
            out += ["```json", json.dumps(example, indent=2), "```", ""]
    return "\n".join(out)


def _fields_table(
    schema: dict[str, Any], schemas: dict[str, Any], what: str = "field"
) -> list[str]:
    rows = [f"| {what} | type | required | meaning |", "| --- | --- | --- | --- |"]
    required = set(schema.get("required", []))
    for name, field in schema.get("properties", {}).items():
        meaning = field.get("description", "").replace("\n", " ")
        rows.append(
            f"| `{name}` | {_type_name(field, schemas)} | {'yes' if name in required else ''} "
            f"| {meaning} |"
        )
    return rows


def _type_name(field: dict[str, Any], schemas: dict[str, Any]) -> str:
    if "$ref" in field:
        name = field["$ref"].rsplit("/", 1)[-1]
        values = schemas.get(name, {}).get("enum")
        return f"{name} ({_one_of(values)})" if values else name
    if "anyOf" in field:
        return " or ".join(_type_name(f, schemas) for f in field["anyOf"])
    if "const" in field:
        return f"`{field['const']}`"
    if "enum" in field:
        return _one_of(field["enum"])
    kind = field.get("type", "any")
    if kind == "array":
        return f"array of {_type_name(field.get('items', {}), schemas)}"
    return f"{kind} ({field['format']})" if "format" in field else str(kind)


def _one_of(values: list[Any]) -> str:
    return ", ".join(f"`{v}`" for v in values)
