"""The interactions a model knows, in one registry per model: the built-in catalogue and the
pydantic models given to the Engine beside it.

Every interaction is a pydantic model on the DomainEvent envelope, validated, stored, hashed,
read back and upcast alike. Each model carries its version (`class_version`) and one upcaster
per version step (events.upcast).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Self

from dealengine.domain.chain import topic_of
from dealengine.domain.definitions import EVENT_TYPES_KEY
from dealengine.domain.errors import InvalidDefinition
from dealengine.domain.events import (
    DEAL_EVENTS,
    LEAD_EVENTS,
    VOID_EVENTS,
    DomainEvent,
    check_upcasters,
    upcast,
)

Reading = tuple[str, Callable[[dict[str, Any]], dict[str, Any]] | None]
"""How a fold reads a stored topic: its event type, and its upcast (None: at version 1)."""


class Interactions:
    """The interactions of one model, by name (`types`) and by stored topic (`by_topic`, the
    corrections too). Immutable once made: share it between threads."""

    def __init__(self, models: Iterable[type[DomainEvent]]) -> None:
        types: dict[str, type[DomainEvent]] = {}
        for model in models:
            if model.event_type in types:
                raise ValueError(f"interaction {model.event_type!r} is registered twice")
            check_upcasters(model)
            types[model.event_type] = model
        self.types: Mapping[str, type[DomainEvent]] = types
        self.by_topic: Mapping[str, type[DomainEvent]] = {
            topic_of(model): model for model in (*types.values(), *VOID_EVENTS)
        }
        self.reading: Mapping[str, Reading] = {
            topic: (model.event_type, _upcast_of(model)) for topic, model in self.by_topic.items()
        }

    def __contains__(self, name: object) -> bool:
        return name in self.types

    def __iter__(self) -> Iterator[str]:
        return iter(self.types)

    def __getitem__(self, name: str) -> type[DomainEvent]:
        return self.types[name]

    def get(self, name: str) -> type[DomainEvent] | None:
        return self.types.get(name)

    @property
    def context(self) -> dict[str, Any]:
        """The validation context under which a definition may name these interactions."""
        return {EVENT_TYPES_KEY: self.types}

    def names(self) -> list[str]:
        return sorted(self.types)

    def with_models(self, models: Iterable[type[DomainEvent]], where: str = "the API") -> Self:
        """These interactions and `models` beside them; a name taken already is refused,
        naming `where` the new one comes from."""
        models = list(models)
        for model in models:
            if model.event_type in self.types:
                kind = "a built-in" if model.event_type in BUILT_IN_NAMES else "an"
                raise InvalidDefinition(
                    where, model.event_type, f"{kind} interaction of that name exists already"
                )
        return type(self)([*self.types.values(), *models])


def _upcast_of(model: type[DomainEvent]) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    if model.class_version == 1:
        return None
    return lambda data: upcast(model, data)


BUILT_IN_NAMES = frozenset(m.event_type for m in (*LEAD_EVENTS, *DEAL_EVENTS))
BUILT_IN = Interactions((*LEAD_EVENTS, *DEAL_EVENTS))
"""The built-in catalogue: every model's interactions start from it."""
