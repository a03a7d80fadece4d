"""Hypothetical events: decided by the real stage rules, seen by one scenario's folds only.

Each event (inline `[[events]]`, then the lines of `events_file`, in order) is parsed as an
ingest line and decided by the engine's own routing of the domain rules (domain/decider.py),
under the scenario's pipelines, against the state the recorded history
gives (read with `engine.lead()` / `engine.deal()`: reads only) and the hypothetical events
before it. A refusal is the error the engine would raise, its message prefixed with the
scenario file and line. Nothing is stored: the decided events become stream events (their JSON
exactly as the store would hold it), appended after the real stream of their scenario.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from dealengine.domain.deal import (
    Deal,
)
from dealengine.domain.decider import decide, evolver
from dealengine.domain.definitions import Pipelines
from dealengine.domain.errors import DealEngineError, UnknownAggregate
from dealengine.domain.interaction import Interaction
from dealengine.domain.lead import Lead
from dealengine.ingest.jsonl import interaction_from, parse_line
from dealengine.projections.stream import StreamEvent
from dealengine.whatif.scenario import Resolved

if TYPE_CHECKING:
    from dealengine.engine import Engine

State = Lead | Deal | None
ACTOR = "whatif"
EVENTS_HEADER = re.compile(r"^\s*\[\[\s*events\s*\]\]")


def hypothetical_events(engine: Engine, plan: Resolved) -> list[StreamEvent]:
    """The scenario's hypothetical events, decided in order, as stream events."""
    commands = list(_commands(plan))
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
            e.args = (f"{where}: {e}",)  # the engine's own error, located in the scenario
            raise
        for event in events:
            stream = event.originator_id
            before = state(stream)
            states[stream] = evolve(before, event)
            data = orjson.loads(event.stored_json())
            decided.append(StreamEvent(-1 - len(decided), stream, event.event_type, data))
    return decided


def _recorded(engine: Engine, stream: str, pipelines: Pipelines) -> State:
    """The state the recorded history gives (None for a lead or deal never recorded)."""
    kind, _, user_id = stream.partition(":")
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


def _commands(plan: Resolved) -> Iterator[tuple[str, Interaction]]:
    """(where, command) for each hypothetical event: inline ones, then the file's lines."""
    source = f"whatif:{plan.name}"
    lines = _header_lines(plan.source)
    for i, obj in enumerate(plan.scenario.events):
        line = f":{lines[i]}" if i < len(lines) else ""
        where = f"{plan.source}{line}: events.{i}"
        try:
            yield where, interaction_from(dict(obj), source, ACTOR)
        except DealEngineError as e:
            e.args = (f"{where}: {e}",)
            raise
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
            yield where, parse_line(text, source, ACTOR)
        except DealEngineError as e:
            e.args = (f"{where}: {e}",)
            raise


def _header_lines(source: str) -> list[int]:
    """The line of each `[[events]]` table in the scenario file (none for an inline array)."""
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError:
        return []
    return [n for n, line in enumerate(text.splitlines(), start=1) if EVENTS_HEADER.match(line)]
