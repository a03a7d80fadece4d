"""What a subscriber receives: each recorded event, and the notifications derived from it.

Derived notifications, computed from the event's own stream, so every owner derives the same:
- `deal.stage_entered`: the deal's stage after the event differs from its stage before it
  (`stage`, `from_stage`; none before a deal's opening);
- `lead.step_reached`: the event is of a funnel step's types and the first of that step in its
  stream (a deal's `deal_opened` and `deal_won` count for the deal's lead: a lead with several
  deals reaches a step once, at the first deal event of that step recorded, as the funnel
  counts it).
A type filter names event types, `deal.stage_entered` / `lead.step_reached`, or one stage or
step of them: `deal.stage_entered:won`, `lead.step_reached:qualified`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from typing import Any, cast

import orjson
from eventsourcing.persistence import Notification
from pydantic import BaseModel, ConfigDict

from dealengine.domain.deal import Deal
from dealengine.domain.decider import Evolvers
from dealengine.domain.definitions import FunnelDefinition
from dealengine.domain.events import (
    ENVELOPE_FIELDS,
    STORED_OUTSIDE_JSON,
    VOID_EVENTS,
    DomainEvent,
)
from dealengine.domain.replay import State
from dealengine.domain.streams import deal_stream, lead_stream, parse_stream
from dealengine.store.application import Store

STAGE_ENTERED = "deal.stage_entered"
STEP_REACHED = "lead.step_reached"
DERIVED = (STAGE_ENTERED, STEP_REACHED)
ENVELOPE = frozenset(ENVELOPE_FIELDS) - STORED_OUTSIDE_JSON  # the stored JSON's envelope
CACHE_LIMIT = 50_000


class Notice(BaseModel):
    """One thing a subscriber is told: an event (`type` is its event type) or a notification
    derived from it. `id` is unique per notice (the event's id, `/stage_entered` or
    `/step_reached` appended for a derived one): the receiver dedupes by it."""

    model_config = ConfigDict(frozen=True)

    id: str
    type: str
    position: int  # the event's notification id: the order it was recorded in
    event_id: str
    event_type: str
    aggregate: str  # "lead", "deal" or "rates" (an exchange rate: domain/rates.py)
    aggregate_id: str
    version: int
    occurred_at: str
    recorded_at: str
    actor: str | None = None
    source: str | None = None
    payload: dict[str, Any]
    stage: str | None = None
    from_stage: str | None = None
    step: str | None = None
    lead_id: str | None = None

    def json_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


def wanted(notice: Notice, types: Collection[str] | None) -> bool:
    """Whether a subscriber filtering by `types` (None: everything) gets `notice`."""
    if types is None:
        return True
    if notice.type in types:
        return True
    detail = notice.stage if notice.type == STAGE_ENTERED else notice.step
    return f"{notice.type}:{detail}" in types


class Notices:
    """Turns notifications into notices, keeping the last state of the streams it saw (a miss
    reads the stream up to the event before)."""

    def __init__(
        self,
        store: Store,
        load: Callable[[str, int | None], State],
        evolve: Evolvers,
        funnel: FunnelDefinition,
    ) -> None:
        self.store = store
        self.load = load
        self.evolve = evolve
        self.step_of = {event: step.name for step in funnel.steps for event in step.events}
        self._deals: dict[str, tuple[int, State]] = {}
        self._steps: dict[str, tuple[int, frozenset[str]]] = {}

    def of(self, notification: Notification) -> Iterator[Notice]:
        event = cast(DomainEvent, self.store.app.mapper.to_domain_event(notification))
        data = orjson.loads(notification.state)
        kind, aggregate_id = parse_stream(event.originator_id)
        base = Notice(
            id=str(event.id),
            type=event.event_type,
            position=notification.id,
            event_id=str(event.id),
            event_type=event.event_type,
            aggregate=kind,
            aggregate_id=aggregate_id,
            version=event.originator_version,
            occurred_at=data["occurred_at"],
            recorded_at=data["recorded_at"],
            actor=data.get("actor"),
            source=data.get("source"),
            payload={k: v for k, v in data.items() if k not in ENVELOPE},
        )
        yield base
        if isinstance(event, VOID_EVENTS):  # the stream's past changed: read it again
            self._deals.pop(event.originator_id, None)
            self._steps.pop(event.originator_id, None)
            return
        lead_id = aggregate_id if kind == "lead" else None
        if kind == "deal":
            before, after = self._deal_states(event)
            from_stage = before.stage if isinstance(before, Deal) else None
            if isinstance(after, Deal):
                lead_id = after.lead_id
                if after.stage != from_stage:
                    yield base.model_copy(
                        update={
                            "id": f"{base.id}/stage_entered",
                            "type": STAGE_ENTERED,
                            "stage": after.stage,
                            "from_stage": from_stage,
                            "lead_id": lead_id,
                        }
                    )
        step = self._first_of_step(event)
        if step is not None and kind == "deal" and lead_id is not None:
            step = step if self._first_for_lead(lead_id, event, step, notification.id) else None
        if step is not None and lead_id is not None:
            yield base.model_copy(
                update={
                    "id": f"{base.id}/step_reached",
                    "type": STEP_REACHED,
                    "step": step,
                    "lead_id": lead_id,
                }
            )

    def _deal_states(self, event: DomainEvent) -> tuple[State, State]:
        stream, version = event.originator_id, event.originator_version
        cached = self._deals.get(stream)
        if cached is not None and cached[0] == version - 1:
            before = cached[1]
        else:
            before = self.load(stream, version - 1) if version > 1 else None
        after = self.evolve(before, event)
        self._remember(self._deals, stream, (version, after))
        return before, after

    def _first_of_step(self, event: DomainEvent) -> str | None:
        step = self.step_of.get(event.event_type)
        stream, version = event.originator_id, event.originator_version
        cached = self._steps.get(stream)
        if cached is not None and cached[0] == version - 1:
            seen = cached[1]
        else:
            earlier = self.store.events(stream, version - 1) if version > 1 else []
            seen = frozenset(
                s for e in earlier if (s := self.step_of.get(e.event_type)) is not None
            )
        self._remember(self._steps, stream, (version, seen | {step} if step else seen))
        return step if step is not None and step not in seen else None

    def _first_for_lead(self, lead_id: str, event: DomainEvent, step: str, position: int) -> bool:
        """Whether no other deal of the lead had an event of `step` recorded before `position`
        (what the lead's stream lists of its deals; read only when it has several)."""
        lead = self.load(lead_stream(lead_id), None)
        deals = getattr(lead, "deals", ())
        for deal in deals if len(deals) > 1 else ():
            other = deal_stream(deal)
            if other == event.originator_id:
                continue
            positions = self.store.positions(other)
            for at, earlier in zip(positions, self.store.events(other), strict=True):
                if at < position and self.step_of.get(earlier.event_type) == step:
                    return False
        return True

    @staticmethod
    def _remember(cache: dict[str, Any], stream: str, value: Any) -> None:
        if len(cache) > CACHE_LIMIT:
            cache.clear()
        cache[stream] = value
