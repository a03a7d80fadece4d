"""Leads' and deals' states and histories: now, as of a time, known at a time, at a version
(the rules: dealengine.domain.replay)."""

from __future__ import annotations

from typing import cast

from dealengine.domain.deal import Deal
from dealengine.domain.decider import Evolvers
from dealengine.domain.errors import DealEngineError, UnknownAggregate
from dealengine.domain.events import DomainEvent
from dealengine.domain.lead import Lead
from dealengine.domain.personal import LeadKeys
from dealengine.domain.replay import Moment, State, TimelineEntry, replay, select, timeline
from dealengine.domain.streams import AggregateKind, deal_stream, is_stream, lead_stream, stream_of
from dealengine.service.personal import revealed
from dealengine.store.application import Store


class States:
    def __init__(self, store: Store, evolve: Evolvers, lead_keys: LeadKeys) -> None:
        self.store = store
        self.evolve = evolve
        self.lead_keys = lead_keys  # to show personal values, or `[erased]`

    def load(self, stream: str, version: int | None = None) -> State:
        """Fold a stream's validated events into its state (None when it has none)."""
        events = cast(list[DomainEvent], self.store.events(stream, version))
        return replay(events, self.evolve)  # voided events left out

    def lead(self, lead_id: str, as_of: Moment, known_at: Moment, version: int | None) -> Lead:
        return cast(Lead, self.state("lead", lead_id, as_of, known_at, version))

    def deal(self, deal_id: str, as_of: Moment, known_at: Moment, version: int | None) -> Deal:
        return cast(Deal, self.state("deal", deal_id, as_of, known_at, version))

    def state(
        self, kind: AggregateKind, id: str, as_of: Moment, known_at: Moment, version: int | None
    ) -> Lead | Deal:
        stream = stream_of(kind, id)
        if as_of is None and known_at is None and version is None:
            state = self.load(stream)
        else:
            events = select(
                self.store.events(stream), as_of=as_of, known_at=known_at, version=version
            )
            state = replay(events, self.evolve)
        if state is None:
            bounds = [f"{k} {v}" for k, v in (("as of", as_of), ("known at", known_at),
                      ("version", version)) if v is not None]  # fmt: skip
            raise UnknownAggregate(" ".join([kind, id, *bounds]))
        return state

    def history(
        self, id: str, as_of: Moment, known_at: Moment, version: int | None
    ) -> list[DomainEvent]:
        events = cast(list[DomainEvent], self.store.events(self.which(id)))
        chosen = select(events, as_of=as_of, known_at=known_at, version=version)
        return revealed(chosen, self.lead_keys)

    def timeline(
        self, id: str, as_of: Moment, known_at: Moment, version: int | None
    ) -> list[TimelineEntry]:
        return timeline(self.history(id, as_of, known_at, version), self.evolve)

    def which(self, id: str) -> str:
        """The stream `id` names: `lead:ID`, `deal:ID`, or whichever of the two exists."""
        candidates = [id] if is_stream(id) else [lead_stream(id), deal_stream(id)]
        found = [c for c in candidates if self.store.exists(c)]
        if not found:
            raise UnknownAggregate(f"lead or deal {id}")
        if len(found) > 1:
            raise DealEngineError(
                f"{id} is both a lead and a deal: ask for {lead_stream(id)} or {deal_stream(id)}"
            )
        return found[0]
