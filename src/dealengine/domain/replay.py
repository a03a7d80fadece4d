"""A stream's state at any moment, bitemporally, and its timeline; corrections honoured.

Which events count:

- `version=N`: the stream's first N events (in recorded order).
- `known_at=T`: what the system knew at T: the events recorded by T (`recorded_at <= T`),
  corrections included only if recorded by T, so a view known before a correction still
  shows the mistake.
- `as_of=T`: what had happened by T, as known now (or at `known_at`): the events that
  occurred by T (`occurred_at <= T`), applied in recorded order (the stage rules were
  checked in that order), plus every known correction whatever its own time: a voided event
  never happened. A back-filled event (occurred in March, recorded in June) changes the
  March as-of view, but not what was known in April.
- As of a moment before its `deal_opened` occurred, a deal did not exist: the state is None
  and its other events (even back-dated ones) are not counted.

The void rule (see also dealengine.domain.corrections): the state of a stream is the fold of
its events without the voided events and without the `event_voided` events themselves;
only `version`, `head` (the chain's last hash) and the idempotency keys come from the whole
stream, so a voided interaction is still a duplicate when it is sent again.

Replay is deterministic: the same events give the same state, and `canonical_json` gives it
as the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import reduce
from typing import NamedTuple, cast
from uuid import UUID

from dealengine.domain.deal import Deal
from dealengine.domain.errors import DealEngineError
from dealengine.domain.events import DealOpened, DomainEvent, EventVoided, parse_moment
from dealengine.domain.lead import Lead

State = Lead | Deal | None  # a lead's or a deal's state; None before its first event
Apply = Callable[[State, DomainEvent], Lead | Deal]
Moment = datetime | str | None


def moment(value: Moment, option: str) -> datetime | None:
    """A time given to the API or the CLI: an aware datetime, a naive one (UTC), or text
    (`2026-03-31` is the end of that day, UTC; `2026-03-31T18:00:00Z`)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return parse_moment(value)
    except ValueError as e:
        raise DealEngineError(f"{option}: {e}") from None


def select(
    events: Sequence[DomainEvent],
    *,
    as_of: Moment = None,
    known_at: Moment = None,
    version: int | None = None,
) -> list[DomainEvent]:
    """The events of one stream that count under these bounds (see the module docstring)."""
    occurred, recorded = moment(as_of, "as_of"), moment(known_at, "known_at")
    if version is not None and version < 0:
        raise DealEngineError(f"version: must be 0 or more, got {version}")
    return [
        e
        for e in events
        if (version is None or e.originator_version <= version)
        and (recorded is None or e.recorded_at <= recorded)
        and (occurred is None or isinstance(e, EventVoided) or e.occurred_at <= occurred)
    ]


def voided_by(events: Sequence[DomainEvent]) -> dict[UUID, int]:
    """Voided event id -> the version of the `event_voided` that voids it."""
    return {e.voided_event_id: e.originator_version for e in events if isinstance(e, EventVoided)}


def replay(events: Sequence[DomainEvent], apply: Apply) -> State:
    """The state these events of one stream give (None: no lead or deal), voids honoured."""
    if not events:
        return None
    if events[0].aggregate == "deal" and not isinstance(events[0], DealOpened):
        return None  # as of then, the deal had not been opened
    voided = voided_by(events)
    if not voided:
        return reduce(apply, events, cast(State, None))
    state: State = None
    keys: set[str] = set()
    for event in events:
        if event.idempotency_key is not None:
            keys.add(event.idempotency_key)
        if not isinstance(event, EventVoided) and event.id not in voided:
            state = apply(state, event)
    if state is None:
        return None
    last = events[-1]
    return state._replace(
        version=last.originator_version, head=last.chain_hash(), idempotency_keys=frozenset(keys)
    )


class TimelineEntry(NamedTuple):
    event: DomainEvent
    after: State  # the state right after this event was recorded (as the system then knew it)
    voided_by: int | None  # the version of the event_voided that voids this event, if any


def timeline(events: Sequence[DomainEvent], apply: Apply) -> list[TimelineEntry]:
    """Every event with the state after it, in recorded order. After a voided event the
    state shows the mistake (that is what was known then); after its `event_voided` the
    state is corrected; the last entry's state is the state of `events`."""
    voids = voided_by(events)
    entries: list[TimelineEntry] = []
    state: State = None
    for n, event in enumerate(events):
        if isinstance(event, EventVoided) or (
            state is None and event.aggregate == "deal" and not isinstance(event, DealOpened)
        ):
            state = replay(events[: n + 1], apply)
        else:
            state = apply(state, event)
        entries.append(TimelineEntry(event, state, voids.get(event.id)))
    return entries
