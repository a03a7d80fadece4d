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
from dealengine.domain.events import DomainEvent, originator_id
from dealengine.domain.interaction import Interaction
from dealengine.domain.lead import Lead, decide_lead, evolve_lead

State = Lead | Deal | None


def decide(
    pipelines: Pipelines, cmd: Interaction, state: Callable[[str], State], now: datetime
) -> list[DomainEvent]:
    """The events recording `cmd`, or the domain error refusing it."""
    if cmd.event_type in OPENING_TYPES:
        deal_id, lead_id = opening_ids(cmd)
        lead = state(originator_id("lead", lead_id)) if lead_id else None
        deal = state(originator_id("deal", deal_id))
        return decide_opening(pipelines, cast(Lead | None, lead), cast(Deal | None, deal), cmd, now)
    if cmd.event_class.aggregate == "lead":
        return decide_lead(cast(Lead | None, state(originator_id("lead", cmd.target))), cmd, now)
    deal = cast(Deal | None, state(originator_id("deal", cmd.target)))
    return decide_deal(pipelines, deal, cmd, now)


def evolver(pipelines: Pipelines) -> Callable[[State, DomainEvent], Lead | Deal]:
    """`evolve(state, event)` for any stream: a lead's or a deal's."""
    evolve_deal = deal_evolver(pipelines)

    def evolve(state: State, event: DomainEvent) -> Lead | Deal:
        if event.aggregate == "lead":
            return evolve_lead(cast(Lead | None, state), event)
        return evolve_deal(cast(Deal | None, state), event)

    return evolve
