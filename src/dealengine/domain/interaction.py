"""The command: a request to record one interaction, and how it becomes an event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from random import getrandbits
from typing import Any, NamedTuple, Protocol, TypeVar

from pydantic import ValidationError

from dealengine.domain.catalogue import BUILT_IN, Interactions
from dealengine.domain.chain import event_hash, topic_of, with_own_hash
from dealengine.domain.errors import DealEngineError, InvalidEvent, InvalidFields, UnknownEventType
from dealengine.domain.events import (
    CHAIN_HASH,
    EVENT_TYPES,
    STORED_JSON,
    DomainEvent,
    dump_stored_json,
)
from dealengine.domain.streams import StreamKind, stream_of
from dealengine.domain.values import check_identifier, explain, shown

E = TypeVar("E", bound=DomainEvent)


class _Fields(NamedTuple):
    event_type: str
    target: str
    occurred_at: Any
    fields: Mapping[str, Any]
    actor: str
    source: str
    idempotency_key: str | None
    model: type[DomainEvent] | None = None  # the interaction's model, in its catalogue


# The other stream an opening names: a deal_opened its lead, a lead_converted its deal.
_LINKED_ID = {"deal_opened": "lead_id", "lead_converted": "deal_id"}

InteractionFields = _Fields  # what build() reads of a command (corrections make their own)


class Interaction(_Fields):
    """Record `event_type` on the lead or deal `target`; `fields` are the type's own fields.

    Nothing here is trusted yet: the fields are validated when the event is built. The type
    is one of `interactions` (the model's catalogue; default: the built-in one).
    (A checked named tuple: immutable, and cheaper to make than a frozen dataclass.)
    """

    __slots__ = ()

    def __new__(
        cls,
        event_type: str,
        target: str,
        occurred_at: Any,
        fields: Mapping[str, Any] | None = None,
        actor: str = "api",
        source: str = "api",
        idempotency_key: str | None = None,
        interactions: Interactions = BUILT_IN,
    ) -> Interaction:
        if not isinstance(event_type, str):
            raise InvalidEvent(f"field 'type': expected a string, got {shown(event_type)}")
        event_class = interactions.get(event_type)
        if event_class is None:
            raise UnknownEventType(event_type, interactions.names())
        fields = fields or {}
        # The ids that name the streams read and written are checked before any is read.
        try:
            check_identifier(target, f"{event_class.aggregate}_id")
            linked = _LINKED_ID.get(event_type)
            if linked is not None and fields.get(linked) is not None:
                check_identifier(fields[linked], linked)
        except ValueError as e:
            raise InvalidEvent(str(e)) from None
        return tuple.__new__(  # what the named tuple's own __new__ does, one call less
            cls,
            (event_type, target, occurred_at, fields, actor, source, idempotency_key, event_class),
        )

    @property
    def event_class(self) -> type[DomainEvent]:
        return self.model or EVENT_TYPES[self.event_type]


def describe(error: ValidationError) -> str:
    """One line naming each bad field and why."""
    parts = []
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "-"
        if err["type"] == "missing":
            parts.append(f"field '{loc}': missing")
        elif not err["loc"]:  # a rule over several fields (lead_identified: one at least)
            parts.append(explain(err).removeprefix("Value error, "))
        elif err["type"] == "extra_forbidden":
            parts.append(f"field '{loc}': not a field of this event type")
        else:
            parts.append(f"field '{loc}': {explain(err)} (got {shown(err.get('input'))})")
    return "; ".join(parts)


def new_event_id() -> str:
    """A random version-4 UUID as hex, from the process's generator rather than the OS's.

    Event ids need to be unique, not secret: this is several times faster than uuid4().
    `random` is reseeded from the OS at start and in every forked child.
    """
    return f"{(getrandbits(128) & _CLEAR) | _V4:032x}"


_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_V4 = (0x4000 << 64) | (0x8000 << 48)


def build(
    cls: type[E],
    kind_id: tuple[StreamKind, str],
    version: int,
    cmd: InteractionFields,
    recorded_at: datetime,
    prev_hash: str | None = None,
    key: bytes | None = None,
    /,
    **payload: Any,
) -> E:
    """Build and validate one event of `cls` as the next in the stream `kind:id`, chained to
    the stream's last event by `prev_hash` (its hash: the state's `head`), its own hash made
    under `key` if one is given (domain/chain.py)."""
    kind, user_id = kind_id
    stream = stream_of(kind, user_id)
    # set one by one, in this order: cheaper than update() with a keyword dict
    payload["originator_id"] = stream
    payload["originator_version"] = version
    payload["id"] = new_event_id()
    payload["occurred_at"] = cmd.occurred_at
    payload["recorded_at"] = recorded_at
    payload["actor"] = cmd.actor
    payload["source"] = cmd.source
    payload["idempotency_key"] = cmd.idempotency_key
    payload["prev_hash"] = prev_hash
    try:
        event: E = cls.__pydantic_validator__.validate_python(payload)
    except ValidationError as e:
        raise InvalidFields(cls.event_type, describe(e)) from e
    # Serialized and hashed once, here: the next event's prev_hash needs the hash now, the
    # mapper stores the JSON with it.
    state = dump_stored_json(event)
    own = event_hash(stream, version, topic_of(cls), state, key)
    cache = event.__dict__
    cache[STORED_JSON] = with_own_hash(state, own)
    cache[CHAIN_HASH] = own
    return event


class Recorded(NamedTuple):
    """What one command stored: its events, or none when its idempotency key was seen before."""

    events: list[DomainEvent]

    @property
    def duplicate(self) -> bool:
        return not self.events


Outcome = Recorded | DealEngineError
Command = Interaction | list[Interaction]  # a list: one unit, stored whole or not at all


class Writer(Protocol):
    """What records commands: the Engine, or its command side (service/commands.py)."""

    @property
    def interactions(self) -> Interactions:
        """The interactions its commands may record (the model's)."""

    def execute_batch(
        self, commands: Sequence[Command], *, strict: bool = False
    ) -> list[Outcome]: ...

    def check(self, commands: Sequence[Command]) -> list[Outcome]: ...
