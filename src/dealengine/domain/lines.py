"""An interaction as a JSON line: the one form every way in shares (a JSONL line, a mapped CSV
row, a scenario's events, the HTTP API). A line's `id` is its idempotency key; without one,
a digest of its content is."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from dealengine.domain.catalogue import BUILT_IN, Interactions
from dealengine.domain.errors import InvalidEvent, UnknownEventType
from dealengine.domain.interaction import Interaction
from dealengine.domain.personal import personal_fields

RawLine = bytes | dict[str, Any] | InvalidEvent  # a line, a decoded one, or why it has none
ENVELOPE_KEYS = ("type", "id", "occurred_at", "actor")


def parse_line(
    text: str | RawLine, source: str, actor: str, interactions: Interactions = BUILT_IN
) -> Interaction:
    """One JSONL line (or a decoded one) as a command, or InvalidEvent naming what is wrong."""
    if isinstance(text, InvalidEvent):
        raise text
    if isinstance(text, dict):
        return interaction_from(text, source, actor, interactions)
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise InvalidEvent(undecodable(text, "utf-8") or f"not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(obj).__name__}")
    return interaction_from(obj, source, actor, interactions)


def undecodable(raw: str | bytes, encoding: str) -> str | None:
    """Why the bytes of a line are not text in `encoding` (the first bad byte and where)."""
    if isinstance(raw, str):
        return None
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as e:
        return f"not valid {encoding}: byte 0x{raw[e.start]:02x} at byte offset {e.start}"
    return None


def interaction_from(
    obj: dict[str, Any], source: str, actor: str, interactions: Interactions = BUILT_IN
) -> Interaction:
    """A decoded interaction (a JSONL line, a mapped CSV row) as a command; its type one of
    `interactions`."""
    event_type = obj.get("type")
    if event_type is None:
        raise InvalidEvent("field 'type': missing")
    if not isinstance(event_type, str):
        raise InvalidEvent(f"field 'type': expected a string, got {event_type!r}")
    model = interactions.get(event_type)
    if model is None:
        raise UnknownEventType(event_type, interactions.names())
    id_field, envelope = _ENVELOPE[model.aggregate]
    target = obj.get(id_field)
    if target is None:
        raise InvalidEvent(f"field '{id_field}': missing")
    if not isinstance(target, str):
        raise InvalidEvent(f"field '{id_field}': expected a string, got {target!r}")
    key = obj.get("id")
    if key is None:  # personal values left out: the key is stored, and kept after an erasure
        personal = personal_fields(model)
        content = (
            {k: "[personal]" if k in personal else v for k, v in obj.items()} if personal else obj
        )
        key = (
            "sha256:"
            + hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
        )
    elif not isinstance(key, str) or not key.strip():
        raise InvalidEvent(f"field 'id': expected a non-empty string, got {key!r}")
    fields = {name: value for name, value in obj.items() if name not in envelope}
    return Interaction(
        event_type, target, obj.get("occurred_at"), fields, obj.get("actor", actor), source, key,
        interactions,
    )  # fmt: skip


# Per kind of stream: the name of its target's field, and the keys of a line that are not fields.
_ENVELOPE = {
    kind: (f"{kind}_id", frozenset((*ENVELOPE_KEYS, f"{kind}_id"))) for kind in ("lead", "deal")
}
