"""Corrections, never rewrites: voiding a mistaken event with an `event_voided` event.

The rule. A lead's or deal's state is the fold of its stream without the voided events (and
without the `event_voided` events themselves); see dealengine.domain.replay. Voiding is
refused, and nothing is stored, when:

- the event is a `deal_opened` or a `lead_converted`: they record one act on two streams
  (the lead points at the deal and back); a deal opened by mistake is closed with
  `deal_lost` instead;
- the event is itself an `event_voided` (a correction is not undone: record the event
  again), or is already voided;
- the stream without it would break the rules its events were decided by: a lead must start
  with a touch (ad, visit, signup, download, webinar, demo request) and obey the
  qualify/disqualify/convert rules; a deal's remaining events, replayed from its opening in
  recorded order, must each be a move the pipeline allows (no skipping where skipping is
  not allowed, no backward move without `deal_stage_changed`, nothing after a close but
  `deal_reopened`, and so on). The error names the first event that would break a rule.

Anything else is corrected with a compensating event: e.g. a wrong amount with
`deal_amount_changed`, a wrong stage with `deal_stage_changed`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from dealengine.domain.deal import Deal, deal_evolver, deal_refusal
from dealengine.domain.definitions import Pipelines
from dealengine.domain.errors import IllegalTransition, InvalidEvent, UnknownEvent
from dealengine.domain.events import (
    LEAD_STATUS_CHANGES,
    DealEventVoided,
    DealOpened,
    DomainEvent,
    EventVoided,
    LeadConverted,
    LeadEventVoided,
    LeadForgotten,
)
from dealengine.domain.interaction import InteractionFields, build
from dealengine.domain.lead import Lead, check_convertible, evolve_lead, lead_refusal
from dealengine.domain.replay import Apply, replay, voided_by
from dealengine.domain.streams import parse_stream

UNVOIDABLE = ("deal_opened", "lead_converted")
S = TypeVar("S", Lead, Deal)


def decide_void(
    pipelines: Pipelines,
    apply: Apply,
    stream: str,
    events: Sequence[DomainEvent],
    event_id: str,
    *,
    reason: str,
    actor: str,
    source: str,
    idempotency_key: str | None,
    now: datetime,
    key: bytes | None = None,
) -> EventVoided | None:
    """The `event_voided` that voids `event_id` (an event id, or `vN`: the event at version N)
    in `stream` (whose events are `events`), None when `idempotency_key` was seen before, or a
    domain error; never both. Its hash is made under the audit `key`, if one is given."""
    kind, user_id = parse_stream(stream)
    state = replay(events, apply)
    if state is None:
        raise UnknownEvent(f"{kind} {user_id} has no events")
    if idempotency_key is not None and idempotency_key in state.idempotency_keys:
        return None
    target = next((e for e in events if _names(event_id, e)), None)
    if target is None:
        raise UnknownEvent(f"{state.name} has no event {event_id}")
    current = state.stage if isinstance(state, Deal) else state.status
    attempted = f"event_voided of v{target.originator_version} ({target.event_type})"

    def refuse(why: str) -> IllegalTransition:
        return IllegalTransition(state.name, current, attempted, why)

    voids = voided_by(events)
    if isinstance(target, EventVoided):
        raise refuse("a correction is not voided: record the event again instead")
    if target.id in voids:
        raise refuse(f"already voided by v{voids[target.id]}")
    if isinstance(target, LeadForgotten):
        raise refuse("an erasure is not undone: the lead's key is destroyed")
    if target.event_type in UNVOIDABLE:
        raise refuse(
            "a deal's opening and its lead's conversion record one act on two streams; "
            "close a deal opened by mistake with deal_lost"
        )
    remaining = [
        e for e in events if not isinstance(e, EventVoided) and e.id not in voids and e != target
    ]
    broken = stream_refusal(pipelines, remaining)
    if broken:
        raise refuse(f"without it, {broken}")
    cls = LeadEventVoided if kind == "lead" else DealEventVoided
    cmd = InteractionFields("event_voided", user_id, now, {}, actor, source, idempotency_key)
    fields = {"voided_event_id": target.id, "reason": reason}
    return build(cls, (kind, user_id), state.version + 1, cmd, now, state.head, key, **fields)


def _names(event_id: str, event: DomainEvent) -> bool:
    if event_id[:1] == "v" and event_id[1:].isdigit():
        return event.originator_version == int(event_id[1:])
    try:
        return event.id == UUID(event_id)
    except ValueError:
        raise InvalidEvent(f"event_voided: {event_id!r} is not an event id nor vN") from None


def stream_refusal(pipelines: Pipelines, events: Sequence[DomainEvent]) -> str | None:
    """Why this (corrected) stream breaks the rules its events were decided by, or None:
    its events replayed in recorded order through the same checks as a new command."""
    if not events:
        return "it would have no events"
    first = events[0]
    if first.aggregate == "lead":
        if first.event_type in LEAD_STATUS_CHANGES:
            return f"v{first.originator_version} ({first.event_type}) would start the lead"
        return _first_refusal(events[1:], evolve_lead(None, first), _lead_check, evolve_lead)
    assert isinstance(first, DealOpened), f"{first.originator_id} does not start with deal_opened"
    evolve = deal_evolver(pipelines)
    deal = evolve(None, first)

    def check(deal: Deal, event: DomainEvent) -> str | None:
        return deal_refusal(pipelines[deal.pipeline], deal, event.event_type, event.payload())

    return _first_refusal(events[1:], deal, check, evolve)


def _lead_check(lead: Lead, event: DomainEvent) -> str | None:
    if isinstance(event, LeadConverted):
        try:
            check_convertible(lead, event.deal_id)
        except IllegalTransition as e:
            return e.reason
        return None
    return lead_refusal(lead, event.event_type)


def _first_refusal(
    events: Sequence[DomainEvent],
    state: S,
    check: Callable[[S, DomainEvent], str | None],
    evolve: Callable[[S, DomainEvent], S],
) -> str | None:
    for event in events:
        reason = check(state, event)
        if reason:
            where = getattr(state, "stage", None) or getattr(state, "status", "")
            return (
                f"v{event.originator_version} ({event.event_type}) would be refused "
                f"in {where!r}: {reason}"
            )
        state = evolve(state, event)
    return None
