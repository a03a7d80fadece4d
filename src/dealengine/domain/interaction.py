"""The command: a request to record one interaction, and how it becomes an event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from uuid import uuid4

from pydantic import ValidationError

from dealengine.domain.errors import InvalidEvent, UnknownEventType
from dealengine.domain.events import EVENT_TYPES, DomainEvent, originator_id

E = TypeVar("E", bound=DomainEvent)


@dataclass(frozen=True, slots=True)
class Interaction:
    """Record `event_type` on the lead or deal `target`; `fields` are the type's own fields.

    Nothing here is trusted yet: the fields are validated when the event is built.
    """

    event_type: str
    target: str
    occurred_at: Any
    fields: Mapping[str, Any] = field(default_factory=dict)
    actor: str = "api"
    source: str = "api"
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        if self.event_type not in EVENT_TYPES:
            raise UnknownEventType(self.event_type, sorted(EVENT_TYPES))
        if not isinstance(self.target, str) or not self.target.strip() or " " in self.target:
            raise InvalidEvent(
                f"field '{self.id_field}': expected a non-empty id, got {self.target!r}"
            )

    @property
    def event_class(self) -> type[DomainEvent]:
        return EVENT_TYPES[self.event_type]

    @property
    def id_field(self) -> str:
        cls = EVENT_TYPES.get(self.event_type)
        return f"{cls.aggregate}_id" if cls else "id"


def describe(error: ValidationError) -> str:
    """One line naming each bad field and why."""
    parts = []
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "-"
        if err["type"] == "missing":
            parts.append(f"field '{loc}': missing")
        elif err["type"] == "extra_forbidden":
            parts.append(f"field '{loc}': not a field of this event type")
        else:
            parts.append(f"field '{loc}': {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)


def build(
    cls: type[E],
    kind_id: tuple[str, str],
    version: int,
    cmd: Interaction,
    recorded_at: datetime,
    **payload: Any,
) -> E:
    """Build and validate one event of `cls` as the next in the stream `kind:id`."""
    kind, user_id = kind_id
    try:
        return cls(
            originator_id=originator_id(kind, user_id),  # type: ignore[arg-type]
            originator_version=version,
            id=uuid4(),
            occurred_at=cmd.occurred_at,
            recorded_at=recorded_at,
            actor=cmd.actor,
            source=cmd.source,
            idempotency_key=cmd.idempotency_key,
            **payload,
        )
    except ValidationError as e:
        raise InvalidEvent(f"{cls.event_type}: {describe(e)}") from e
