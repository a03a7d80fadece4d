"""Hypothetical events: decided by the real stage rules, seen by one scenario's folds only.

Each event (inline `[[events]]`, then the lines of `events_file`, in order) is parsed as an
ingest line and decided by the engine's own routing of the domain rules (domain/decider.py),
under the scenario's pipelines, against the state the recorded history
gives (read with `engine.lead()` / `engine.deal()`: reads only) and the hypothetical events
before it. A refusal is the error the engine would raise, its message prefixed with the
scenario file and line, and quoting no value of the event (a bad one is named by its field).
Nothing is stored: the decided events become stream events (their JSON
exactly as the store would hold it), appended after the real stream of their scenario.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Protocol

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from dealengine.domain.catalogue import Interactions
from dealengine.domain.deal import (
    Deal,
)
from dealengine.domain.decider import decide, evolver
from dealengine.domain.definitions import FunnelDefinition, Pipelines
from dealengine.domain.errors import (
    DealEngineError,
    InvalidEvent,
    InvalidFields,
    UnknownAggregate,
    UnknownEventType,
)
from dealengine.domain.interaction import Interaction
from dealengine.domain.lead import Lead
from dealengine.domain.lines import interaction_from, parse_line
from dealengine.domain.rates import KnownRate
from dealengine.domain.replay import State
from dealengine.domain.streams import parse_stream
from dealengine.projections.stream import StreamEvent
from dealengine.whatif.scenario import Resolved


class RecordedHistory(Protocol):
    """What a what-if reads of the store beside its stream: the definitions in force, the
    clock, and the states of recorded leads and deals (the Engine is one)."""

    funnel_definition: FunnelDefinition
    pipelines: Pipelines
    interactions: Interactions
    clock: Callable[[], datetime]

    def lead(self, lead_id: str) -> Lead: ...

    def deal(self, deal_id: str) -> Deal: ...

    def rates(self) -> list[KnownRate]: ...


ACTOR = "whatif"
EVENTS_HEADER = re.compile(r"^\s*\[\[\s*events\s*\]\]")
FIELD = re.compile(r"(?:\w+: )?field '\w+'")  # how an InvalidEvent names its field
SAFE_PREFIXES = ("not valid JSON", "not valid utf-8", "expected a JSON object")  # no values


def hypothetical_events(engine: RecordedHistory, plan: Resolved) -> list[StreamEvent]:
    """The scenario's hypothetical events, decided in order, as stream events."""
    commands = list(_commands(plan, engine.interactions))
    if not commands:
        return []
    states: dict[str, State] = {}

    def state(stream: str) -> State:
        if stream not in states:
            states[stream] = _recorded(engine, stream, plan.pipelines)
        return states[stream]

    evolve = evolver(plan.pipelines)
    now = engine.clock()
    decided: list[StreamEvent] = []
    for where, cmd in commands:
        try:
            events = decide(plan.pipelines, cmd, state, now)
        except DealEngineError as e:
            raise _located(where, e) from None  # the engine's own error, in the scenario
        for event in events:
            stream = event.originator_id
            before = state(stream)
            states[stream] = evolve(before, event)
            data = orjson.loads(event.stored_json())
            decided.append(StreamEvent(-1 - len(decided), stream, event.event_type, data))
    return decided


def _recorded(engine: RecordedHistory, stream: str, pipelines: Pipelines) -> State:
    """The state the recorded history gives (None for a lead or deal never recorded)."""
    kind, user_id = parse_stream(stream)
    try:
        if kind == "lead":
            return engine.lead(user_id)
        deal = engine.deal(user_id)
    except UnknownAggregate:
        return None
    defn = pipelines.by_name.get(deal.pipeline)
    if defn is None or deal.stage not in defn.stage:
        where = "pipeline" if defn is None else f"pipeline {deal.pipeline}"
        raise DealEngineError(
            f"deal {user_id} is in stage {deal.stage!r} of pipeline {deal.pipeline!r}, "
            f"which the scenario's {where} does not have"
        )
    return deal


def _commands(plan: Resolved, interactions: Interactions) -> Iterator[tuple[str, Interaction]]:
    """(where, command) for each hypothetical event: inline ones, then the file's lines."""
    source = f"whatif:{plan.name}"
    lines = _header_lines(plan.source)
    for i, obj in enumerate(plan.scenario.events):
        line = f":{lines[i]}" if i < len(lines) else ""
        where = f"{plan.source}{line}: events.{i}"
        try:
            yield where, interaction_from(dict(obj), source, ACTOR, interactions)
        except DealEngineError as e:
            raise _located(where, e) from None
    path = plan.events_file
    if path is None:
        return
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DealEngineError(
            f"{plan.source}: events_file: cannot read {path}: {e.strerror}"
        ) from None
    for number, text in enumerate(raw.splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{path}:{number}"
        try:
            yield where, parse_line(text, source, ACTOR, interactions)
        except DealEngineError as e:
            raise _located(where, e) from None


def _located(where: str, error: DealEngineError) -> DealEngineError:
    """`error`, its message prefixed with where in the scenario it is, and quoting no value of
    the event: a scenario's files may hold anything (a secret in a misnamed file), so a bad
    event is named by its file, line and field. A refusal by the stage rules names the lead
    or deal as recorded, its stage and the move, as the engine does."""
    error.args = (f"{where}: {_unquoted(error)}",)
    return error  # raised `from None`: a pydantic cause would print the value too


def _unquoted(error: DealEngineError) -> str:
    if isinstance(error, UnknownEventType):
        return "field 'type': unknown event type"
    if isinstance(error, UnknownAggregate):
        kind = error.aggregate.partition(" ")[0]
        return f"field '{kind}_id': no such {kind} recorded"
    if not isinstance(error, InvalidEvent) or str(error).startswith(SAFE_PREFIXES):
        return str(error)
    if isinstance(error, InvalidFields) and isinstance(error.__cause__, ValidationError):
        fields = "; ".join(_field(e) for e in error.__cause__.errors())
        return f"{error.event_type}: {fields}"
    named = FIELD.match(str(error))
    if named is None:
        return "not a valid event"
    kind = "missing" if str(error).endswith(": missing") else "invalid value"
    return f"{named[0]}: {kind}"


def _field(error: ErrorDetails) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "-"
    if error["type"] == "missing":
        return f"field '{where}': missing"
    if error["type"] == "extra_forbidden":
        return f"field '{where}': not a field of this event type"
    if error["type"] in ("value_error", "assertion_error"):  # a validator's own words
        return f"field '{where}': invalid value"
    return f"field '{where}': {error['msg']}"  # pydantic's: the form expected, not the input


def _header_lines(source: str) -> list[int]:
    """The line of each `[[events]]` table in the scenario file (none for an inline array)."""
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError:
        return []
    return [n for n, line in enumerate(text.splitlines(), start=1) if EVENTS_HEADER.match(line)]
