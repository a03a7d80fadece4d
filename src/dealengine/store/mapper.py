"""Glue between pydantic events and eventsourcing 9.5 (which ships none).

The mapper writes an event's JSON straight from pydantic's serializer and builds the model
back with full validation, its class found by topic in the store's interactions and the JSON
upcast to the class's version first; the projections skip this and read the JSON themselves.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent, Transcoder
from pydantic import ValidationError

from dealengine.domain.catalogue import BUILT_IN, Interactions
from dealengine.domain.chain import topic_of
from dealengine.domain.events import STORED_JSON, TIGHTENED, DomainEvent, as_stored, upcast


class OrjsonTranscoder(Transcoder):
    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)


class PydanticMapper(Mapper[str]):
    interactions: Interactions = BUILT_IN  # the store's model's (set by Store)

    def to_stored_event(self, domain_event: DomainEventProtocol[str]) -> StoredEvent:
        event = cast(DomainEvent, domain_event)
        cls = type(event)
        state = event.__dict__.get(STORED_JSON) or event.stored_json()  # serialized by build()
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return StoredEvent(
            originator_id=event.originator_id,
            originator_version=event.originator_version,
            topic=topic_of(cls),
            state=state,
        )

    def to_stored_events(self, events: list[DomainEvent]) -> list[StoredEvent]:
        """`to_stored_event` of each event, for a batch: without a compressor or a cipher the
        stored state is the JSON `build()` wrote, and each StoredEvent is made with its fields
        set directly (what its frozen dataclass `__init__` does, at a third of the cost)."""
        if self.compressor or self.cipher:
            return [self.to_stored_event(event) for event in events]
        stored_events: list[StoredEvent] = []
        append = stored_events.append
        new = object.__new__
        for event in events:
            fields = event.__dict__
            stored = new(StoredEvent)
            stored.__dict__.update(
                originator_id=fields["originator_id"],
                originator_version=fields["originator_version"],
                topic=topic_of(type(event)),
                state=fields.get(STORED_JSON) or event.stored_json(),
            )
            append(stored)
        return stored_events

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[str]:
        state = stored_event.state
        try:
            if self.cipher:
                state = self.cipher.decrypt(state)
            if self.compressor:
                state = self.compressor.decompress(state)
            data = orjson.loads(state)
        except Exception as e:
            where = f"{stored_event.originator_id} v{stored_event.originator_version}"
            msg = f"cannot decode {where}: {e}"
            raise MapperDeserialisationError(msg) from e
        data.pop("hash", None)  # its own hash: not a field (domain/chain.py)
        cls = self.interactions.by_topic.get(stored_event.topic)
        if cls is None:
            where = f"{stored_event.originator_id} v{stored_event.originator_version}"
            msg = f"{where} is an interaction this model does not define: {stored_event.topic}"
            raise MapperDeserialisationError(msg)
        data = upcast(cls, data)
        data["originator_id"] = str(stored_event.originator_id)
        data["originator_version"] = stored_event.originator_version
        try:
            event = cls.model_validate(data)
        except ValidationError as e:
            if any(err["type"] not in TIGHTENED for err in e.errors()):
                raise
            event = as_stored(cls, data)  # written before a rule it breaks: read as written
        stored = state if isinstance(state, bytes) else str(state).encode()  # (tampered type)
        event.remember_stored_json(stored)  # its hash is the hash of what is stored
        return event
