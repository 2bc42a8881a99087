"""Breaking changes between a released document and the current one (the contract gate)."""

from collections.abc import Iterator
from typing import Any

from shared.asyncapi.topics import TOPICS, message_name


def breaking_changes(released: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What in `current` would break a tool written against `released` (empty: compatible).

    On topics leadrouter writes, readers break when a message, a field or a guaranteed
    field goes, or a field takes a type it did not have. On topics tools write, writers
    break when a field becomes required or stops accepting a type.
    """
    problems: list[str] = []
    for channel_id, channel in released["channels"].items():
        now = current["channels"].get(channel_id)
        if now is None or now["address"] != channel["address"]:
            problems.append(f"channel {channel['address']} removed or renamed")
            continue
        for name in channel["messages"]:
            if name not in now["messages"]:
                problems.append(f"{channel['address']}: message {name} removed")
    tools_write = {
        message_name(t) for topic in TOPICS if not topic.leadrouter_writes for t in topic.types
    }
    for name, message in released["components"]["messages"].items():
        new = current["components"]["messages"].get(name)
        if new is None:
            problems.append(f"message {name} removed")
            continue
        old_schema = _Resolver(released).payload(message)
        new_schema = _Resolver(current).payload(new)
        if name in tools_write:
            problems += [f"{name}: {p}" for p in _writer_breaks(old_schema, new_schema, "")]
        else:
            problems += [f"{name}: {p}" for p in _reader_breaks(old_schema, new_schema, "")]
    return problems


class _Resolver:
    """Flattens a message payload (allOf of envelope and data, refs) into one plain schema."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._schemas = document["components"]["schemas"]

    def payload(self, message: dict[str, Any]) -> dict[str, Any]:
        return self.flat(message.get("payload", {}))

    def flat(self, schema: Any) -> dict[str, Any]:
        if not isinstance(schema, dict):
            return {}
        if "$ref" in schema:
            return self.flat(self._schemas[schema["$ref"].rsplit("/", 1)[-1]])
        out = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema.get("allOf", []):
            part = self.flat(part)
            out["properties"] = {**out.get("properties", {}), **part.get("properties", {})}
            out["required"] = sorted({*out.get("required", []), *part.get("required", [])})
            if "type" in part:
                out["type"] = part["type"]
        if "properties" in out:
            out["properties"] = {k: self.flat(v) for k, v in out["properties"].items()}
        if "items" in out:
            out["items"] = self.flat(out["items"])
        if "anyOf" in out:
            out["anyOf"] = [self.flat(s) for s in out["anyOf"]]
        return out


def _types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a schema admits (empty: any)."""
    if "anyOf" in schema:
        branches = [_types(s) for s in schema["anyOf"]]
        return set() if any(not b for b in branches) else set().union(*branches)
    kind = schema.get("type")
    if kind is None:
        return {"object"} if "properties" in schema else set()
    types = {kind} if isinstance(kind, str) else set(kind)
    return types | ({"number"} if "integer" in types else set())


def _object_branch(schema: dict[str, Any]) -> dict[str, Any]:
    for branch in [schema, *schema.get("anyOf", [])]:
        if "properties" in branch:
            return branch
    return {}


def _reader_breaks(old: dict[str, Any], new: dict[str, Any], path: str) -> Iterator[str]:
    old_types, new_types = _types(old), _types(new)
    if old_types and (not new_types or not new_types <= old_types):
        yield f"{path or '/'} may now be {sorted(new_types - old_types) or 'anything'}"
    if "const" in old and new.get("const") != old["const"]:
        yield f"{path or '/'} is no longer {old['const']!r}"
    old_obj, new_obj = _object_branch(old), _object_branch(new)
    for name, field in old_obj.get("properties", {}).items():
        at = f"{path}/{name}"
        if name not in new_obj.get("properties", {}):
            yield f"{at} removed"
            continue
        if name in old_obj.get("required", []) and name not in new_obj.get("required", []):
            yield f"{at} no longer always present"
        yield from _reader_breaks(field, new_obj["properties"][name], at)
    if "items" in old and "items" in new:
        yield from _reader_breaks(old["items"], new["items"], f"{path}/*")


def _writer_breaks(old: dict[str, Any], new: dict[str, Any], path: str) -> Iterator[str]:
    old_types, new_types = _types(old), _types(new)
    if new_types and (not old_types or not old_types <= new_types):
        yield f"{path or '/'} no longer accepts {sorted(old_types - new_types) or 'anything'}"
    old_obj, new_obj = _object_branch(old), _object_branch(new)
    for name in set(new_obj.get("required", [])) - set(old_obj.get("required", [])):
        yield f"{path}/{name} is now required"
    for name, field in new_obj.get("properties", {}).items():
        if name in old_obj.get("properties", {}):
            yield from _writer_breaks(old_obj["properties"][name], field, f"{path}/{name}")
