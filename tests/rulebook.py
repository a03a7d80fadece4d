"""Given / when / then for the stage rules, with no database: the vocabulary of test_rules_*.

given: past events of a lead or a deal, built as the store would hold them (chained, one a
day from 1 April 2026) and folded with evolve into a state; when: a command (`Interaction`)
decided against those states; then: the events it records, or the error that refuses it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import reduce
from pathlib import Path
from typing import Any

import pytest

from dealengine.domain.deal import Deal
from dealengine.domain.decider import Evolvers, decide
from dealengine.domain.definitions import Pipelines, load_pipelines
from dealengine.domain.errors import IllegalTransition
from dealengine.domain.events import EVENT_TYPES, DomainEvent
from dealengine.domain.interaction import Interaction, build
from dealengine.domain.lead import Lead

PIPELINES = load_pipelines()
EVOLVE = Evolvers(PIPELINES)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
Line = tuple[str, dict[str, Any]] | str  # an event type, with its fields if it has any


def day(n: int) -> datetime:
    return datetime(2026, 4, 1, 10, 0, tzinfo=UTC) + timedelta(days=n - 1)


# Openings used as the first event of a deal: 10,000 USD, owned by Ana.
def opened(lead_id: str | None = "L-1", **fields: Any) -> tuple[str, dict[str, Any]]:
    return (
        "deal_opened",
        {"lead_id": lead_id, "amount": Decimal("10000"), "currency": "USD", "owner": "ana"}
        | fields,
    )


def history(stream: str, *lines: Line) -> list[DomainEvent]:
    """The stored events of `stream` (`lead:L-1`, `deal:D-1`): one per line, in order.

    Built directly, not decided, so a history may hold what the rules would now refuse
    (the corrections tests need that). A field `key` becomes the idempotency key.
    """
    kind, user_id = stream.split(":", 1)
    events: list[DomainEvent] = []
    for version, line in enumerate(lines, start=1):
        event_type, fields = (line, {}) if isinstance(line, str) else (line[0], dict(line[1]))
        key = fields.pop("key", None)
        cmd = Interaction(event_type, user_id, day(version), idempotency_key=key)
        prev = events[-1].chain_hash() if events else None
        cls = EVENT_TYPES[event_type]
        events.append(build(cls, (kind, user_id), version, cmd, day(version), prev, **fields))
    return events


def fold(events: list[DomainEvent]) -> Lead | Deal:
    state = reduce(EVOLVE, events, None)
    assert state is not None
    return state


def given_lead(lead_id: str, *lines: Line) -> Lead:
    lead = fold(history(f"lead:{lead_id}", *lines))
    assert isinstance(lead, Lead)
    return lead


def given_deal(deal_id: str, *lines: Line, pipelines: Pipelines = PIPELINES) -> Deal:
    events = history(f"deal:{deal_id}", *lines)
    deal = reduce(Evolvers(pipelines), events, None)
    assert isinstance(deal, Deal)
    return deal


def after(state: Lead | Deal, events: list[DomainEvent], pipelines: Pipelines = PIPELINES) -> Any:
    """The state after these new events (folded with the pipelines' evolve)."""
    return reduce(Evolvers(pipelines), events, state)


def when(
    event_type: str,
    target: str,
    fields: Mapping[str, Any] | None = None,
    *,
    given: tuple[Lead | Deal, ...] = (),
    key: str | None = None,
    occurred_at: object = None,
    pipelines: Pipelines = PIPELINES,
) -> list[DomainEvent]:
    """The events `decide` records for this command (occurring on 28 April unless told),
    against the given leads and deals."""
    known = {f"{'lead' if isinstance(s, Lead) else 'deal'}:{s.id}": s for s in given}
    at = day(28) if occurred_at is None else occurred_at
    cmd = Interaction(event_type, target, at, fields, idempotency_key=key)
    return decide(pipelines, cmd, known.get, NOW)


def then_recorded(
    events: list[DomainEvent], *expected: tuple[str, str, int, dict[str, Any]]
) -> None:
    """Each event's type, stream, version, and the fields named (the others are not checked)."""
    assert len(events) == len(expected), [e.event_type for e in events]
    for event, (event_type, stream, version, fields) in zip(events, expected, strict=True):
        assert (event.event_type, event.originator_id, event.originator_version) == (
            event_type,
            stream,
            version,
        )
        assert {name: getattr(event, name) for name in fields} == fields


@contextlib.contextmanager
def then_refused(aggregate: str, current: str, attempted: str, because: str) -> Iterator[None]:
    """The command is refused with IllegalTransition naming the lead or deal, the stage (or
    status) it is in, and the attempted move, with `because` in the reason."""
    with pytest.raises(IllegalTransition) as refused:
        yield
    error = refused.value
    assert (error.aggregate, error.current, error.attempted) == (aggregate, current, attempted)
    assert because in error.reason
    assert str(error).startswith(f"{aggregate} is in {current!r}: {attempted} refused: ")


def edited(tmp: Path, name: str, *edits: tuple[str, str]) -> Path:
    """A copy of projections/`name` in `tmp`, with these text edits (each must apply)."""
    text = (Path(__file__).resolve().parents[1] / "projections" / name).read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp / name
    path.write_text(text)
    return path


def variant(tmp: Path, *edits: tuple[str, str]) -> Pipelines:
    """projections/pipeline.toml with text edits, loaded by load_pipelines like the real one."""
    return load_pipelines(edited(tmp, "pipeline.toml", *edits))
