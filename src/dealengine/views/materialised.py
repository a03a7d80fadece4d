"""Materialised funnel and pipeline views: the in-memory folds, applied batch by batch.

For each batch of new events: load the fold state of the leads or deals they touch, take
their counters away, apply the events with the SAME fold the in-memory views use, add their
new counters, and write states, counters and the position in one transaction.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Protocol

import orjson
from eventsourcing.persistence import Tracking

from dealengine.domain.errors import DealEngineError, VersionConflict
from dealengine.logs import get_logger
from dealengine.projections.funnel import FunnelProjection, FunnelView
from dealengine.projections.pipeline import DealFacts, PipelineProjection, PipelineView
from dealengine.projections.stream import VOIDED, StreamEvent, collector_paused, decode_batch
from dealengine.store.recorders import Row
from dealengine.views.counters import (
    ZERO,
    Amounts,
    Key,
    add_amounts,
    funnel_counters,
    funnel_from_counters,
    pipeline_counters,
    pipeline_from_counters,
)
from dealengine.views.tables import Counter, ViewTables

log = get_logger("dealengine.views")

ProjectionName = Literal["funnel", "pipeline"]
PROJECTIONS: tuple[ProjectionName, ...] = ("funnel", "pipeline")
BATCH = 100_000  # events per transaction (Settings.view_batch)
SEP = "\x1f"


class OutOfDate(DealEngineError):
    """The definition changed since the view was built: mixing old and new rules is refused."""


class NewCorrection(Exception):
    """An event_voided the view has not applied: it must be rebuilt without the voided event."""


class Source(Protocol):
    """Where events come from: the engine's store."""

    def voided_ids(self, stop: int | None = None) -> set[str]: ...

    def stream(
        self, gt: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, str, str, bytes]]: ...

    def position(self) -> int: ...


def digest(definition: Any) -> str:
    return hashlib.sha256(orjson.dumps(definition.model_dump(mode="json"))).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Lag:
    view: str
    position: int  # the last event the view has applied
    head: int  # the last event in the store

    @property
    def behind(self) -> int:
        """Events recorded but not yet in the view (an upper bound: ids may have gaps)."""
        return max(0, self.head - self.position)


class Adapter(Protocol):
    """What a projection needs to be materialised: its entities and its counters."""

    definition_digest: str
    event_types: Collection[str]  # what its folds read: the other events are not decoded

    def process(
        self, tables: ViewTables, view: str, events: Sequence[StreamEvent]
    ) -> tuple[dict[str, str], dict[str, Counter]]: ...

    def read(self, rows: Iterable[tuple[str, int, str | None, str | None]]) -> Any: ...


class FunnelAdapter:
    """Entities: `L:<lead>` (the lead's fold state) and `D:<deal stream>` (its lead)."""

    def __init__(self, fold: FunnelProjection) -> None:
        self.fold = fold
        self.definition_digest = digest(fold.definition)
        self.event_types: Collection[str] = fold.event_types

    def process(
        self, tables: ViewTables, view: str, events: Sequence[StreamEvent]
    ) -> tuple[dict[str, str], dict[str, Counter]]:
        fold, state = self.fold, self.fold.initial()
        deals = {e.stream for e in events if e.stream[0] == "d"}
        stored = tables.entities(view, (f"D:{d}" for d in deals))
        state.lead_of_deal.update((k[2:], orjson.loads(v)) for k, v in stored.items())
        leads = {e.stream[5:] for e in events if e.stream[0] == "l"}
        leads |= set(state.lead_of_deal.values())
        leads |= {
            e.data["lead_id"] for e in events if e.type == "deal_opened" and e.data.get("lead_id")
        }
        for entity, value in tables.entities(view, (f"L:{lead}" for lead in leads)).items():
            state.load_lead(entity[2:], orjson.loads(value))
        counts: dict[Key, int] = {}
        funnel_counters(fold, state, leads, -1, counts)
        known_deals = set(state.lead_of_deal)
        for event in events:
            fold.apply(state, event)
        funnel_counters(fold, state, leads, +1, counts)
        entities = {
            f"L:{lead}": orjson.dumps(state.dump_lead(lead)).decode()
            for lead in leads
            if lead in state.earliest
        }
        entities.update(
            (f"D:{d}", orjson.dumps(lead).decode())
            for d, lead in state.lead_of_deal.items()
            if d not in known_deals
        )
        totals = tables.counter_rows(view, (SEP.join(k) for k in counts))
        changed: dict[str, Counter] = {}
        for key, delta in counts.items():
            name = SEP.join(key)
            if delta:
                n = totals.get(name, (0, None, None))[0] + delta
                changed[name] = (n, None, None)
        return entities, changed

    def read(self, rows: Iterable[tuple[str, int, str | None, str | None]]) -> FunnelView:
        return funnel_from_counters(self.fold, {tuple(k.split(SEP)): n for k, n, _, _ in rows})


class PipelineAdapter:
    """Entities: one per deal stream, its fold state; counters keyed by pipeline."""

    def __init__(self, folds: Sequence[PipelineProjection]) -> None:
        self.folds = {f.definition.name: f for f in folds}
        self.definition_digest = digest_all(f.definition for f in folds)
        self.event_types: Collection[str] = frozenset().union(*(f.event_types for f in folds))

    def process(
        self, tables: ViewTables, view: str, events: Sequence[StreamEvent]
    ) -> tuple[dict[str, str], dict[str, Counter]]:
        states: dict[str, dict[str, DealFacts]] = {name: {} for name in self.folds}
        deals = {e.stream for e in events if e.stream[0] == "d"}
        for stream, value in tables.entities(view, deals).items():
            data = orjson.loads(value)
            states[data.pop("pipeline")][stream] = DealFacts.load(data)
        amounts: dict[Key, Amounts] = {}
        for name, fold in self.folds.items():
            for facts in states[name].values():
                add_amounts(amounts, _keyed(name, pipeline_counters(fold, facts)), -1)
        for event in events:
            if event.stream[0] == "d":
                for name, fold in self.folds.items():
                    fold.apply(states[name], event)
        entities: dict[str, str] = {}
        for name, fold in self.folds.items():
            for stream, facts in states[name].items():
                if stream in deals:
                    add_amounts(amounts, _keyed(name, pipeline_counters(fold, facts)), +1)
                    entities[stream] = orjson.dumps({"pipeline": name, **facts.dump()}).decode()
        totals = tables.counter_rows(view, (SEP.join(k) for k in amounts))
        changed: dict[str, Counter] = {}
        for key, (n, amount, weighted) in amounts.items():
            name = SEP.join(key)
            if n or amount or weighted:
                old_n, old_amount, old_weighted = totals.get(name, (0, "0", "0"))
                changed[name] = (
                    old_n + n,
                    str(Decimal(old_amount or 0) + amount),
                    str(Decimal(old_weighted or 0) + weighted),
                )
        return entities, changed

    def read(
        self, rows: Iterable[tuple[str, int, str | None, str | None]]
    ) -> dict[str, PipelineView]:
        by_pipeline: dict[str, dict[Key, Amounts]] = {name: {} for name in self.folds}
        for key, n, amount, weighted in rows:
            pipeline, *rest = key.split(SEP)
            if pipeline in by_pipeline:
                by_pipeline[pipeline][tuple(rest)] = (
                    n,
                    Decimal(amount or 0),
                    Decimal(weighted or 0),
                )
        return {
            name: pipeline_from_counters(self.folds[name], by_pipeline[name]) for name in self.folds
        }


def digest_all(definitions: Iterable[Any]) -> str:
    return hashlib.sha256("".join(digest(d) for d in definitions).encode()).hexdigest()[:16]


def _keyed(pipeline: str, counters: dict[Key, Amounts]) -> Iterator[tuple[Key, Amounts]]:
    return (((pipeline, *key), value) for key, value in counters.items())


class MaterialisedView:
    """One projection's view: catch up, rebuild into a new generation, read, report the lag."""

    def __init__(
        self,
        name: ProjectionName,
        adapter: Adapter,
        tables: ViewTables,
        source: Source,
        batch: int = BATCH,
    ) -> None:
        self.name, self.adapter, self.tables, self.source = name, adapter, tables, source
        self.batch = batch

    def active(self) -> str | None:
        found = self.tables.active(self.name)
        if found is None:
            return None
        view, stored_digest = found
        if stored_digest != self.adapter.definition_digest:
            raise OutOfDate(
                f"the {self.name} definition changed since its view was built "
                f"({stored_digest} -> {self.adapter.definition_digest}): "
                f"run `dealengine rebuild {self.name}`"
            )
        return view

    def lag(self) -> Lag:
        view = self.active() or f"{self.name}#0"
        position = self.tables.position(view)
        return Lag(view, position, self.source.position())

    def catch_up(
        self,
        progress: Callable[[int], None] | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> int:
        """Apply every event recorded since the view's position. With no view yet, build one
        (resuming a build that was interrupted: its rows and position were written together).
        A correction (event_voided) cannot be subtracted from counters: it rebuilds the view."""
        view = self.active()
        try:
            if view is not None:
                return self._run(view, progress, stop, skip=set())
            unfinished = sorted(self.tables.generations(self.name))
            if unfinished:
                return self._build(unfinished[-1], progress, stop, self._skip_at_build())
        except NewCorrection:
            log.info("view.correction", projection=self.name)
        return self.rebuild(progress, stop)

    def rebuild(
        self,
        progress: Callable[[int], None] | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> int:
        """Replay from position 0 into a fresh generation while the active one keeps answering,
        then switch to it atomically. Voided events are left out, as in every other view."""
        for _ in range(3):
            found = self.tables.active(self.name)
            for stale in self.tables.generations(self.name):
                if found is None or stale != found[0]:
                    self.tables.drop(stale)  # an earlier rebuild that did not finish
            try:
                return self._build(self._new_generation(), progress, stop, self._skip_at_build())
            except NewCorrection:  # a correction landed during the rebuild: once more
                continue
        raise DealEngineError(f"the {self.name} view: corrections keep arriving during rebuilds")

    def _skip_at_build(self) -> set[str]:
        return self.source.voided_ids(None)

    def _build(
        self,
        view: str,
        progress: Callable[[int], None] | None,
        stop: Callable[[], bool],
        skip: set[str],
    ) -> int:
        applied = self._run(view, progress, stop, skip=skip)
        if not stop():
            self.tables.activate(self.name, view, self.adapter.definition_digest)
            log.info("view.switched", projection=self.name, view=view, events=applied)
        return applied

    def _new_generation(self) -> str:
        """A generation name never used before (its tracking row must start empty)."""
        return f"{self.name}#{time.time_ns() // 1000:x}"

    def read(self) -> tuple[Any, Lag]:
        view, rows = self.tables.counters(self.name)
        if view is None:
            raise DealEngineError(f"no {self.name} view yet: run `dealengine rebuild {self.name}`")
        self.active()  # refuses a view built under another definition
        position = self.tables.position(view)
        return self.adapter.read(rows), Lag(view, position, self.source.position())

    def _run(
        self,
        view: str,
        progress: Callable[[int], None] | None,
        stop: Callable[[], bool] = lambda: False,
        *,
        skip: set[str],
    ) -> int:
        """Apply batches until the end of the stream (or `stop()`, between batches), leaving
        out the events voided in `skip`; a void of anything else raises NewCorrection."""
        start = self.tables.position(view)
        with closing(_reading(self.source, start)) as rows:  # closed on Ctrl-C too
            return self._apply(view, rows, progress, stop, skip)

    def _apply(
        self,
        view: str,
        rows: Iterator[Row],
        progress: Callable[[int], None] | None,
        stop: Callable[[], bool],
        skip: set[str],
    ) -> int:
        applied = 0
        while not stop() and (
            chunk := _next_batch(rows, self.batch, self.adapter.event_types, skip)
        ):
            began = time.perf_counter()
            kept = [event for event, keep in chunk if keep]
            with collector_paused():  # the states are long-lived: see collector_paused
                entities, counters = (
                    self.adapter.process(self.tables, view, kept) if kept else ({}, {})
                )
            position = chunk[-1][0].position  # skipped events count as read
            try:
                self.tables.write(view, entities, counters, Tracking(view, position))
            except VersionConflict:  # another process applied these events first: carry on
                log.info("view.overtaken", projection=self.name, view=view, position=position)
                return applied + self._run(view, progress, stop, skip=skip)
            applied += len(chunk)
            if progress:
                progress(len(chunk))
            log.info(
                "view.batch",
                projection=self.name,
                view=view,
                position=position,
                events=len(chunk),
                seconds=round(time.perf_counter() - began, 3),
            )
        return applied


def _reading(source: Source, gt: int) -> Generator[Row, None, None]:
    yield from source.stream(gt)


@collector_paused()  # the batch is long-lived: see collector_paused
def _next_batch(
    rows: Iterator[Row], size: int, types: Collection[str], skip: set[str]
) -> list[tuple[StreamEvent, bool]]:
    """Up to `size` events, each with whether the view applies it: decoded (of a type the
    view reads), not voided, not a void already applied; a new void raises NewCorrection."""
    marked = []
    for event in decode_batch(rows, size, types):
        if event.type == VOIDED:
            if event.data["voided_event_id"] not in skip:
                raise NewCorrection(event.data["voided_event_id"])
            marked.append((event, False))
        else:
            marked.append((event, bool(event.data) and event.data["id"] not in skip))
    return marked


__all__ = ["PROJECTIONS", "ZERO", "Lag", "MaterialisedView", "OutOfDate"]
