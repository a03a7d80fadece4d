"""The hash chain: the one definition of an event's hash, used when writing and when verifying.

Every event stores `prev_hash`, the hash of the event before it in its own stream (None, JSON
null, for version 1). The hash of an event is the lowercase hex SHA-256 of

    "dealengine-event-v1\\n" + f"{len(originator_id)}:{originator_id}\\n"
    + f"{originator_version}\\n" + f"{len(topic)}:{topic}\\n"      (UTF-8; lengths in characters)

followed by `state`: the event's JSON exactly as the store holds it (it includes `prev_hash`, so
each hash covers the whole stream before it). `topic` is the stored topic. Only the originator
id and version live outside the JSON (they are the store's key columns), so they are hashed
beside it; the length prefixes make the encoding unambiguous.
"""

from __future__ import annotations

from functools import cache
from hashlib import sha256

from eventsourcing.utils import get_topic


def event_hash(originator_id: str, originator_version: int, topic: str, state: bytes) -> str:
    """The hash of one stored event (see the module docstring for the encoding)."""
    digest = sha256(
        f"dealengine-event-v1\n{len(originator_id)}:{originator_id}\n"
        f"{originator_version}\n{len(topic)}:{topic}\n".encode()
    )
    digest.update(state)
    return digest.hexdigest()


@cache
def topic_of(cls: type) -> str:
    """The topic an event class is stored under (eventsourcing's `module:QualName`)."""
    return get_topic(cls)
