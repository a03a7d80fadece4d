"""The hash chain: the one definition of an event's hash, used when writing and when verifying.

The hash of an event is over its envelope and its JSON: the lowercase hex SHA-256 of

    "dealengine-event-v1\\n" + f"{len(originator_id)}:{originator_id}\\n"
    + f"{originator_version}\\n" + f"{len(topic)}:{topic}\\n"      (UTF-8; lengths in characters)

followed by the event's JSON without its own hash (below). `topic` is the stored topic. Only
the originator id and version live outside the JSON (they are the store's key columns), so
they are hashed beside it; the length prefixes make the encoding unambiguous.

With a key (`DEALENGINE_AUDIT_KEY`) the hash is HMAC-SHA256 under that key of the same bytes,
written `hmac-sha256:<64 hex>`: the prefix is how a store records that it is keyed (event by
event: an event's hash says which rule made it). Without a key it is the bare 64 hex digits.

Every event stores two hashes in its JSON:
- `prev_hash`: the hash of the event before it in its own stream (JSON null for version 1), so
  each hash covers the whole stream before it;
- `hash`: its own hash, written as the JSON's last member: the stored JSON is the JSON without
  it, its closing `}` replaced by `,"hash":"<hash>"}`. Stripping that suffix gives back exactly
  the bytes that were hashed. The own hash is also the event's link in the chain: the next
  event's `prev_hash` is it, verbatim, so each event is hashed once.

Events stored before the own hash (no `hash` member) are hashed the same way, over their JSON
as it is (which is then the JSON without an own hash): their hash is only checked through the
next event's `prev_hash`.
"""

from __future__ import annotations

import hmac
from functools import cache
from hashlib import sha256

KEYED = "hmac-sha256:"  # the prefix of a hash made under DEALENGINE_AUDIT_KEY
_OWN = b',"hash":"'  # the own hash member, the stored JSON's last one
_TAIL = b'"}'
_KEYED = KEYED.encode()


def event_hash(
    originator_id: str,
    originator_version: int,
    topic: str,
    state: bytes,
    key: bytes | None = None,
) -> str:
    """The hash of one event, `state` being its JSON without its own hash (see the module
    docstring for the encoding); under `key`, the HMAC, prefixed `hmac-sha256:`."""
    head = (
        f"dealengine-event-v1\n{len(originator_id)}:{originator_id}\n"
        f"{originator_version}\n{len(topic)}:{topic}\n".encode()
    )
    if key is None:
        digest = sha256(head)
        digest.update(state)
        return digest.hexdigest()
    mac = hmac.new(key, head, sha256)
    mac.update(state)
    return KEYED + mac.hexdigest()


def record_hash(data: bytes, key: bytes | None = None) -> str:
    """The same rule for other records (the seal log's entries): SHA-256 of `data`, or under
    `key` its HMAC-SHA256, prefixed `hmac-sha256:`."""
    if key is None:
        return sha256(data).hexdigest()
    return KEYED + hmac.new(key, data, sha256).hexdigest()


def with_own_hash(state: bytes, own: str) -> bytes:
    """The stored JSON: `state` (a JSON object) with its own hash written as its last member."""
    return b"%s%s%s%s" % (state[:-1], _OWN, own.encode("ascii"), _TAIL)


def split_own_hash(stored: bytes) -> tuple[bytes, str | None]:
    """(the JSON without its own hash, the own hash it claims): the inverse of `with_own_hash`.
    A stored JSON that does not end with an own hash member in that form has none: (stored,
    None). A quote inside a JSON string is escaped, so the member cannot be matched inside a
    value."""
    if stored[-75:-66] == _OWN:  # ,"hash":"<64 hex>"}
        own = stored[-66:-2]
    elif stored[-87:-78] == _OWN and stored[-78:-66] == _KEYED:  # ,"hash":"hmac-sha256:<64>"}
        own = stored[-78:-2]
    else:
        return stored, None
    if stored[-2:] != _TAIL or not own[-64:].isalnum():
        return stored, None
    return stored[: -11 - len(own)] + b"}", own.decode("ascii")


def is_keyed(own: str) -> bool:
    return own.startswith(KEYED)


@cache
def topic_of(cls: type) -> str:
    """The topic an event class is stored under: eventsourcing's `module:QualName` (what its
    `get_topic` gives a class without a TOPIC attribute), made here so that the domain needs
    nothing of the store to hash an event."""
    return f"{cls.__module__}:{cls.__qualname__}"
