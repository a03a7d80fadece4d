"""The routing every writer shares (the engine, what-if's hypothetical events): which rules
decide a command, and which evolve applies an event. Pure: state comes from `state(stream)`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import cast

from dealengine.domain.deal import (
    OPENING_TYPES,
    Deal,
    deal_evolver,
    decide_deal,
    decide_opening,
    opening_ids,
)
from dealengine.domain.definitions import Pipelines
from dealengine.domain.events import EVENT_TYPES, DomainEvent
from dealengine.domain.interaction import Interaction
from dealengine.domain.lead import Lead, decide_lead, evolve_lead
from dealengine.domain.replay import State
from dealengine.domain.streams import deal_stream, lead_stream

Evolve = Callable[[State, DomainEvent], Lead | Deal]


def decide(
    pipelines: Pipelines,
    cmd: Interaction,
    state: Callable[[str], State],
    now: datetime,
    key: bytes | None = None,
) -> list[DomainEvent]:
    """The events recording `cmd`, or the domain error refusing it; their hashes are made
    under the audit `key` if one is given (domain/chain.py)."""
    event_type = cmd.event_type
    if event_type in OPENING_TYPES:
        deal_id, lead_id = opening_ids(cmd)
        lead = state(lead_stream(lead_id)) if lead_id else None
        deal = state(deal_stream(deal_id))
        return decide_opening(
            pipelines, cast(Lead | None, lead), cast(Deal | None, deal), cmd, now, key
        )
    if cmd.event_class.aggregate == "lead":
        return decide_lead(cast(Lead | None, state(lead_stream(cmd.target))), cmd, now, key)
    deal = cast(Deal | None, state(deal_stream(cmd.target)))
    return decide_deal(pipelines, deal, cmd, now, key)


def evolver(pipelines: Pipelines) -> Evolvers:
    """`evolve(state, event)` for any stream: a lead's or a deal's."""
    return Evolvers(pipelines)


class Evolvers(dict[type[DomainEvent], Evolve]):
    """The evolve of each event class: `evolvers[type(event)](state, event)` (the write path's
    form: no routing call), or `evolvers(state, event)`."""

    def __init__(self, pipelines: Pipelines) -> None:
        self.deal = cast(Evolve, deal_evolver(pipelines))
        super().__init__((cls, self.__missing__(cls)) for cls in EVENT_TYPES.values())

    def __missing__(self, cls: type[DomainEvent]) -> Evolve:
        return cast(Evolve, evolve_lead) if cls.aggregate == "lead" else self.deal

    def __call__(self, state: State, event: DomainEvent) -> Lead | Deal:
        return self[type(event)](state, event)
