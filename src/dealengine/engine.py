"""The facade an embedding product uses: record interactions, read leads and deals, get views.

The one place where the store, the stage rules and the projections are wired together.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

from eventsourcing.persistence import InfrastructureFactory, IntegrityError
from eventsourcing.utils import Environment
from pydantic import ValidationError

from dealengine.audit.corrections import decide_void
from dealengine.audit.replay import Moment, TimelineEntry, replay, select, timeline
from dealengine.audit.verify import ManifestWriter, Seal, VerifyReport, read_manifest, verify
from dealengine.domain.deal import (
    OPENING_TYPES,
    Deal,
    opening_ids,
)
from dealengine.domain.decider import decide, evolver
from dealengine.domain.definitions import (
    FunnelDefinition,
    PipelineDefinition,
    Pipelines,
    load_funnel,
    load_pipelines,
)
from dealengine.domain.errors import (
    ConcurrencyConflict,
    DealEngineError,
    InvalidDefinition,
    UnknownAggregate,
)
from dealengine.domain.events import EVENT_TYPES, DomainEvent, format_time, originator_id
from dealengine.domain.interaction import Interaction
from dealengine.domain.lead import Lead
from dealengine.projections.funnel import FunnelProjection, FunnelTotals, FunnelView
from dealengine.projections.partitioned import split_pass
from dealengine.projections.pipeline import (
    DealStageTimes,
    PipelineChanges,
    PipelineProjection,
    PipelineView,
    changes,
)
from dealengine.projections.stream import (
    Fold,
    FoldPass,
    StreamEvent,
    collector_paused,
    corrected,
    decode,
    fold_rows,
)
from dealengine.settings import Settings
from dealengine.store.application import Store, tables_lock, views_env
from dealengine.store.recorders import Partition, Row
from dealengine.views.materialised import (
    FunnelAdapter,
    Lag,
    MaterialisedView,
    PipelineAdapter,
    ProjectionName,
)
from dealengine.views.tables import PostgresViewRecorder, SQLiteViewRecorder, ViewTables
from dealengine.views.worker import Owner, follow, stop_on_signals

if TYPE_CHECKING:  # imported when used: dealengine.whatif builds on this module
    from dealengine.whatif.result import WhatIf
    from dealengine.whatif.run import ScenarioLike

State = Lead | Deal | None
T = TypeVar("T")
MAX_ATTEMPTS = 8
CACHE_LIMIT = 200_000
_MISSING: Any = object()  # not in a dict (None is a state: no events)
PARALLEL_FROM = 50_000  # events: below, a rebuild stays in one process (forking costs ~10 ms)
MAX_PROCESSES = 4


def utc_now() -> datetime:
    return datetime.now(UTC)


class Recorded(NamedTuple):
    """What one command stored: its events, or none when its idempotency key was seen before."""

    events: list[DomainEvent]

    @property
    def duplicate(self) -> bool:
        return not self.events


Outcome = Recorded | DealEngineError


class Engine:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        pipeline: PipelineDefinition | Pipelines | None = None,
        funnel: FunnelDefinition | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings or Settings()
        if isinstance(pipeline, PipelineDefinition):
            pipeline = Pipelines(pipelines=[pipeline])
        self.pipelines = pipeline or load_pipelines()
        self.pipeline_definition = self.pipelines.default
        self.funnel_definition = funnel or load_funnel()
        self.clock = clock
        self.store = Store(self.settings)
        self._apply = evolver(self.pipelines)
        self._views: dict[str, MaterialisedView] = {}
        self._view_tables: ViewTables | None = None
        self._cache: dict[str, State] = {}  # states of streams this engine wrote; may be stale

    @classmethod
    def in_memory(cls, **kwargs: Any) -> Engine:
        """An engine on a private in-memory SQLite store (for tests and experiments)."""
        return cls(Settings(db=":memory:", database_url=None), **kwargs)

    def close(self) -> None:
        if self._view_tables is not None:
            self._view_tables.datastore.close()  # type: ignore[attr-defined]
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------------------

    def record(
        self,
        type: str,
        id: str,
        occurred_at: datetime | str,
        *,
        actor: str = "api",
        source: str = "api",
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Recorded:
        """Record one interaction on lead or deal `id`; raises a DealEngineError if refused."""
        cmd = Interaction(type, id, occurred_at, fields, actor, source, idempotency_key)
        outcome = self.execute_batch([cmd])[0]
        if isinstance(outcome, DealEngineError):
            raise outcome
        return outcome

    def execute_batch(
        self, commands: Sequence[Interaction], *, strict: bool = False
    ) -> list[Outcome]:
        """Decide every command in order and store all their events in one transaction.

        A refused command gets its error in the result and stores nothing; the others are
        kept (with `strict`, the first refusal ends the batch and nothing is stored). When
        another writer got there first, the batch is re-read and re-decided, a few times.
        """
        touched: set[str] = set()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            outcomes, pending, work = self._decide_all(commands, strict)
            touched = set(work)
            if not pending or (strict and isinstance(outcomes[-1], DealEngineError)):
                return outcomes
            try:
                self.store.append(pending)
            except IntegrityError:  # another writer appended first: re-read, re-decide
                for stream in touched:
                    self._cache.pop(stream, None)
                time.sleep(random.uniform(0, 0.01 * attempt))
                continue
            if len(self._cache) > CACHE_LIMIT:
                self._cache.clear()
            self._cache.update(work)
            return outcomes
        raise ConcurrencyConflict(sorted(touched), MAX_ATTEMPTS)

    def check(self, commands: Sequence[Interaction]) -> list[Outcome]:
        """What `execute_batch(commands, strict=True)` would decide, storing nothing."""
        return self._decide_all(commands, strict=True)[0]

    def _decide_all(
        self, commands: Sequence[Interaction], strict: bool
    ) -> tuple[list[Outcome], list[DomainEvent], dict[str, State]]:
        """Decide commands in order on working copies of their aggregates' states.

        States come from this engine's cache when it has them. A cached state may be stale:
        a wrong acceptance is caught by the version check when saving, and a refusal based on
        a cached state is re-decided once on a fresh read before it is reported.
        """
        work: dict[str, State] = {}
        fresh: set[str] = set()  # read from the store during this call
        changed: set[str] = set()  # have pending events in this batch
        used: list[str] = []
        cache = self._cache
        load = self._load

        def state(stream: str) -> State:
            used.append(stream)
            current = work.get(stream, _MISSING)
            if current is _MISSING:
                current = cache.get(stream, _MISSING)
                if current is _MISSING:
                    current = cache[stream] = load(stream)
                    fresh.add(stream)
                work[stream] = current
            return cast(State, current)

        fresh.update(self._prefetch(commands))
        outcomes: list[Outcome] = []
        pending: list[DomainEvent] = []
        now = self.clock()
        pipelines = self.pipelines
        evolve = self._apply  # by event class (evolve[type(event)]): one call per event, not two
        for cmd in commands:
            used.clear()
            try:
                try:
                    events = decide(pipelines, cmd, state, now)
                except DealEngineError:
                    doubtful = {s for s in used if s not in fresh and s not in changed}
                    if not doubtful:
                        raise
                    for stream in doubtful:
                        work.pop(stream, None)
                        cache.pop(stream, None)
                    events = decide(pipelines, cmd, state, now)
            except DealEngineError as e:
                outcomes.append(e)
                if strict:
                    break
                continue
            for event in events:
                stream = event.originator_id
                prior = work.get(stream, _MISSING)  # decide() read it: no second state() call
                if prior is _MISSING:
                    prior = state(stream)
                work[stream] = evolve[type(event)](cast(State, prior), event)
                changed.add(stream)
            pending.extend(events)
            outcomes.append(tuple.__new__(Recorded, (events,)))  # Recorded(events), one call less
        return outcomes, pending, work

    def _prefetch(self, commands: Sequence[Interaction]) -> set[str]:
        """Read the states of the streams the commands name that are not cached, in one go."""
        wanted: set[str] = set()
        add = wanted.add
        for cmd in commands:
            event_type = cmd.event_type
            if event_type in OPENING_TYPES:
                deal_id, lead_id = opening_ids_or_none(cmd)
                wanted.update(s for s in (_stream("deal", deal_id), _stream("lead", lead_id)) if s)
            else:  # originator_id(kind, target), as decide() names it
                add(f"{EVENT_TYPES[event_type].aggregate}:{cmd.target}")
        missing = sorted(wanted - self._cache.keys())
        if missing:
            events = self.store.events_of(missing)
            self._cache.update(dict.fromkeys(missing))  # no events: None (what replay gives)
            for stream, found in events.items():
                self._cache[stream] = replay(found, self._apply)
        return set(missing)

    def _load(self, stream: str, version: int | None = None) -> State:
        """Fold a stream's validated events into its state (None when it has none)."""
        events = cast(Iterator[DomainEvent], self.store.app.events.get(stream, lte=version))
        return replay(list(events), self._apply)  # voided events left out (audit/replay.py)

    # --- reading -------------------------------------------------------------------------------

    def lead(
        self,
        lead_id: str,
        *,
        as_of: Moment = None,
        known_at: Moment = None,
        version: int | None = None,
    ) -> Lead:
        """The lead now, or as of a time (what had happened by then, by occurred_at), as known
        at a time (what was recorded by then), or at a version (dealengine.audit.replay)."""
        return _as(Lead, self._state("lead", lead_id, as_of, known_at, version))

    def deal(
        self,
        deal_id: str,
        *,
        as_of: Moment = None,
        known_at: Moment = None,
        version: int | None = None,
    ) -> Deal:
        """The deal now, or as of / known at a time, or at a version (like `lead`)."""
        return _as(Deal, self._state("deal", deal_id, as_of, known_at, version))

    def _state(
        self, kind: str, id: str, as_of: Moment, known_at: Moment, version: int | None
    ) -> Lead | Deal:
        stream = f"{kind}:{id}"
        if as_of is None and known_at is None and version is None:
            state = self._load(stream)
        else:
            events = select(
                self.store.events(stream), as_of=as_of, known_at=known_at, version=version
            )
            state = replay(events, self._apply)
        if state is None:
            bounds = [f"{k} {v}" for k, v in (("as of", as_of), ("known at", known_at),
                      ("version", version)) if v is not None]  # fmt: skip
            raise UnknownAggregate(" ".join([kind, id, *bounds]))
        return state

    def history(
        self,
        id: str,
        *,
        as_of: Moment = None,
        known_at: Moment = None,
        version: int | None = None,
    ) -> list[DomainEvent]:
        """Every event of one lead or deal, in order (`id` may be `lead:ID` or `deal:ID`); the
        ones that count as of / known at a time, or up to a version, when given."""
        events = cast(list[DomainEvent], self.store.events(self._which(id)))
        return select(events, as_of=as_of, known_at=known_at, version=version)

    def _which(self, id: str) -> str:
        """The stream `id` names: `lead:ID`, `deal:ID`, or whichever of the two exists."""
        candidates = [id] if id.startswith(("lead:", "deal:")) else [f"lead:{id}", f"deal:{id}"]
        found = [c for c in candidates if self.store.exists(c)]
        if not found:
            raise UnknownAggregate(f"lead or deal {id}")
        if len(found) > 1:
            raise DealEngineError(f"{id} is both a lead and a deal: ask for lead:{id} or deal:{id}")
        return found[0]

    # --- audit: timelines, corrections, tamper evidence -------------------------------------

    def timeline(
        self,
        id: str,
        *,
        as_of: Moment = None,
        known_at: Moment = None,
        version: int | None = None,
    ) -> list[TimelineEntry]:
        """`history` with the state after each event and which correction voids it."""
        events = self.history(id, as_of=as_of, known_at=known_at, version=version)
        return timeline(events, self._apply)

    def void(
        self,
        id: str,
        event_id: str,
        *,
        reason: str,
        actor: str = "api",
        source: str = "api",
        idempotency_key: str | None = None,
    ) -> Recorded:
        """Void the event `event_id` of lead or deal `id` with an `event_voided` event (the rule,
        and what is refused: dealengine.audit.corrections). Nothing is rewritten."""
        stream = self._which(id)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            events = cast(list[DomainEvent], self.store.events(stream))
            void = decide_void(
                self.pipelines, self._apply, stream, events, event_id, reason=reason,
                actor=actor, source=source, idempotency_key=idempotency_key, now=self.clock(),
            )  # fmt: skip
            if void is None:
                return Recorded([])
            try:
                self.store.append([void])
            except IntegrityError:  # another writer appended first: re-read, re-decide
                time.sleep(random.uniform(0, 0.01 * attempt))
                continue
            self._cache[stream] = replay([*events, void], self._apply)
            return Recorded([void])
        raise ConcurrencyConflict([stream], MAX_ATTEMPTS)

    def verify(
        self,
        *,
        seal: str | None = None,
        manifest: Path | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> VerifyReport:
        """Recompute every stream's hash chain, streaming the store; with a `seal` (and its
        `manifest`), also compare the streams with it (dealengine.audit.verify)."""
        sealed = Seal.parse(seal) if seal else None
        if manifest is not None and sealed is None:
            raise DealEngineError("a manifest is checked against its seal: give the seal too")
        summaries = read_manifest(manifest, sealed) if manifest and sealed else None
        return verify(
            self.store.by_stream(),
            self.store.position(),
            seal=sealed,
            manifest=summaries,
            progress=progress,
        )

    def seal(
        self, *, manifest: Path | None = None, progress: Callable[[int], None] | None = None
    ) -> VerifyReport:
        """The store's seal at its current position (`report.sealed`; keep it outside the
        system), checking every chain on the way; with `manifest`, also write the seal's
        per-stream manifest there."""
        position = self.store.position()
        if manifest is None:
            return verify(self.store.by_stream(), position, progress=progress)
        with ManifestWriter(manifest) as write:
            report = verify(self.store.by_stream(), position, progress=progress, on_summary=write)
            assert report.sealed is not None
            write.close(report.sealed)
        return report

    def events(self, gt: int = 0) -> Iterator[StreamEvent]:
        """The whole event stream in recorded order, as the folds see it: without voided
        events and without the `event_voided` events themselves."""
        stop = self.store.position()
        return corrected(decode(self.store.stream(gt, stop)), self.store.voided_ids(stop))

    @collector_paused()
    def views(
        self, *, as_of: datetime | None = None, pipeline_name: str | None = None
    ) -> tuple[FunnelView, PipelineView]:
        """Funnel and pipeline, rebuilt together in one pass over the stream.

        Python's cyclic collector is paused for the whole call, not only for the fold: once it
        resumes, its next young-generation scan covers every object made while it was paused,
        and a large fold's states (a second at 1,000,000 events) are alive until the reports
        are made. They die (by reference counting) when the call returns."""
        funnel = FunnelProjection(self.funnel_definition)
        pipeline = self._pipeline_projection(pipeline_name)
        totals, pipeline_state = self._funnel_pass(funnel, pipeline, as_of)
        return funnel.assemble(totals, as_of), pipeline.report(pipeline_state, as_of, self.clock())

    @collector_paused()  # see views()
    def funnel(self, *, as_of: datetime | None = None, **overrides: Any) -> FunnelView:
        """The funnel from the events that occurred by `as_of` (default: all of them).

        `overrides` replace keys of the funnel definition for this call: mode,
        conversion_window_days, attribution, breakdowns, cohort, exclusions, steps.
        """
        funnel = FunnelProjection(self._funnel_definition(overrides))
        return funnel.assemble(self._funnel_pass(funnel, None, as_of)[0], as_of)

    @collector_paused()  # see views()
    def pipeline(
        self, *, as_of: datetime | None = None, pipeline_name: str | None = None
    ) -> PipelineView:
        """A pipeline (default: the first) from the events that occurred by `as_of`."""
        pipeline = self._pipeline_projection(pipeline_name)
        return pipeline.report(self._fold([pipeline], as_of)[0], as_of, self.clock())

    @collector_paused()  # see views()
    def stage_times(
        self, *, as_of: datetime | None = None, pipeline_name: str | None = None
    ) -> list[DealStageTimes]:
        """Every deal's stays in each stage: entered, left, latest and cumulative days."""
        pipeline = self._pipeline_projection(pipeline_name)
        return pipeline.stage_times(self._fold([pipeline], as_of)[0], as_of or self.clock())

    @collector_paused()  # see views()
    def pipeline_changes(
        self, start: datetime, end: datetime, *, pipeline_name: str | None = None
    ) -> PipelineChanges:
        """How the open pipeline moved between two dates (one pass: two as-of folds)."""
        if end < start:
            raise DealEngineError(f"--changes: {format_time(end)} is before {format_time(start)}")
        pipeline = self._pipeline_projection(pipeline_name)
        before, after = pipeline.initial(), pipeline.initial()
        first, last = format_time(start), format_time(end)
        for event in self.events():
            at = event.data["occurred_at"]
            if at <= last:
                pipeline.apply(after, event)
                if at <= first:
                    pipeline.apply(before, event)
        return changes(pipeline.definition, before, after, start, end)

    def _pipeline_projection(self, name: str | None) -> PipelineProjection:
        if name is not None and name not in self.pipelines.by_name:
            known = ", ".join(self.pipelines.by_name)
            raise DealEngineError(f"unknown pipeline {name!r} (known: {known})")
        definition = self.pipelines[name] if name else self.pipelines.default
        return PipelineProjection(definition, default=definition is self.pipelines.default)

    def _funnel_pass(
        self, funnel: FunnelProjection, pipeline: PipelineProjection | None, as_of: datetime | None
    ) -> tuple[list[FunnelTotals], Any]:
        """The funnel's totals (and the pipeline's state, with a pipeline) from one pass,
        split over processes by lead when the store is large (`Settings.rebuild_processes`)."""
        pipeline_state: list[Any] = []

        def work(part: Partition | None, fold_pass: FoldPass) -> FunnelTotals:
            mine = FunnelProjection(funnel.definition, part)
            folds: list[Fold[Any]] = [mine]
            if pipeline is not None and (part is None or part[0] == 0):  # whole, in this process
                folds.append(pipeline)
            states = fold_pass(folds, as_of)
            pipeline_state.extend(states[1:])
            return mine.summarise(states[0])

        totals = self._over_partitions(work)
        return totals, pipeline_state[0] if pipeline_state else None

    def _over_partitions(self, work: Callable[[Partition | None, FoldPass], T]) -> list[T]:
        """`work(part, fold_pass)` for each partition of the leads, where `fold_pass(folds,
        as_of)` is `_fold` over that partition's events: in one process, [work(None, _fold)];
        on a large store, one partition per process (projections/partitioned.py)."""
        stop = self.store.position()  # the voids and the stream read at the same point
        skip_ids = self.store.voided_ids(stop)
        processes = self._rebuild_processes(stop)
        if processes == 1:
            return [work(None, _fold_pass(self.store.stream(0, stop), skip_ids))]
        settings = self.settings.model_copy(update={"read_only": True})

        def rows_in_child(part: Partition) -> Iterator[Row]:
            store = Store(settings)  # its own connection: never the parent's
            try:
                yield from store.stream(0, stop, part)
            finally:
                store.close()

        def in_part(part: Partition, rows: Iterable[Row]) -> T:
            return work(part, _fold_pass(rows, skip_ids))

        return split_pass(
            lambda part: self.store.stream(0, stop, part), rows_in_child, processes, in_part
        )

    def _rebuild_processes(self, events: int) -> int:
        if self.settings.db == ":memory:" and not self.settings.database_url:
            return 1  # a child process cannot open this process's memory
        if sys.platform != "linux":
            return 1  # fork is what makes a child cheap
        if self.settings.rebuild_processes is not None:
            return self.settings.rebuild_processes
        if events < PARALLEL_FROM:
            return 1
        return max(1, min(len(os.sched_getaffinity(0)), MAX_PROCESSES))

    def _fold(self, folds: Sequence[Fold[Any]], as_of: datetime | None) -> list[Any]:
        """One pass over the stream for every fold (see `_fold_pass`)."""
        stop = self.store.position()  # the voids and the stream read at the same point
        return _fold_pass(self.store.stream(0, stop), self.store.voided_ids(stop))(folds, as_of)

    def _funnel_definition(self, overrides: dict[str, Any]) -> FunnelDefinition:
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return self.funnel_definition
        try:
            return FunnelDefinition.model_validate(self.funnel_definition.model_dump() | given)
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or next(iter(given))
            raise InvalidDefinition("funnel (this call)", key, err["msg"]) from e

    # --- materialised views ----------------------------------------------------------------

    def view(self, name: ProjectionName) -> MaterialisedView:
        """The materialised `funnel` or `pipeline` view (tables beside the store)."""
        if self.settings.read_only:
            raise DealEngineError("the store is open read-only: no materialised views (use --full)")
        if name not in self._views:
            if self._view_tables is None:
                env = Environment("DealEngineViews", views_env(self.settings, self.store.env))
                with tables_lock(self.settings.database_url):
                    factory = InfrastructureFactory.construct(env)
                    recorder_class = (
                        PostgresViewRecorder if self.settings.database_url else SQLiteViewRecorder
                    )
                    self._view_tables = cast(
                        ViewTables,
                        factory.tracking_recorder(recorder_class),
                    )
            adapter: FunnelAdapter | PipelineAdapter = (
                FunnelAdapter(FunnelProjection(self.funnel_definition))
                if name == "funnel"
                else PipelineAdapter(
                    [
                        PipelineProjection(p, default=p is self.pipelines.default)
                        for p in self.pipelines.pipelines
                    ]
                )
            )
            tables = self._view_tables
            self._views[name] = MaterialisedView(name, adapter, tables, self.store)
        return self._views[name]

    def live_funnel(self, *, catch_up: bool = True) -> tuple[FunnelView, Lag]:
        """The funnel from its materialised view (brought up to date first, unless a worker
        owns it); the Lag says how far behind the stream it is."""
        view = self.view("funnel")
        if catch_up:
            self._catch_up(view)
        funnel, lag = view.read()
        return cast(FunnelView, funnel), lag

    def live_pipeline(
        self, *, pipeline_name: str | None = None, catch_up: bool = True
    ) -> tuple[PipelineView, Lag]:
        view = self.view("pipeline")
        if catch_up:
            self._catch_up(view)
        pipelines, lag = view.read()
        name = self._pipeline_projection(pipeline_name).definition.name
        return cast(dict[str, PipelineView], pipelines)[name], lag

    def follow(self, names: Sequence[ProjectionName], poll: float = 1.0) -> None:
        """Run as a projection worker on PostgreSQL until SIGINT/SIGTERM (see views/worker.py)."""
        assert self.settings.database_url, "follow needs PostgreSQL"
        schema = self.store.recorder.datastore.schema  # type: ignore[union-attr]
        owner = Owner(self.settings.database_url, schema)
        channel = self.store.recorder.channel_name  # type: ignore[union-attr]
        try:
            with stop_on_signals() as stopping:
                follow([self.view(n) for n in names], owner, channel, stopping, poll)
        finally:
            owner.close()

    def _catch_up(self, view: MaterialisedView) -> None:
        """On SQLite, catch up now. On PostgreSQL only when no worker owns the view."""
        if not self.settings.database_url:
            view.catch_up()
            return
        owner = Owner(self.settings.database_url, self.store.recorder.datastore.schema)  # type: ignore[union-attr]
        try:
            if owner.try_take(view.name):
                view.catch_up()
        finally:
            owner.close()

    # --- what-if ---------------------------------------------------------------------------

    def what_if(
        self,
        scenario: ScenarioLike,
        *,
        as_of: datetime | None = None,
        pipeline_name: str | None = None,
    ) -> WhatIf:
        """The views under a scenario (a TOML file, a `Scenario`, or a mapping of its keys)
        beside the baseline, from one read of the store; nothing is written. See
        `what_ifs` and projections/scenarios/README.md."""
        return self.what_ifs([scenario], as_of=as_of, pipeline_name=pipeline_name)

    def what_ifs(
        self,
        scenarios: Sequence[ScenarioLike],
        *,
        as_of: datetime | None = None,
        pipeline_name: str | None = None,
    ) -> WhatIf:
        """The baseline (as of `as_of`, pipeline `pipeline_name`, like `views`) and every
        scenario, folded in the same pass over the stream (dealengine.whatif; the collector
        paused there, as in views())."""
        from dealengine.whatif.run import run_what_if

        return run_what_if(
            self, scenarios, self._over_partitions, as_of=as_of, pipeline_name=pipeline_name
        )


def _fold_pass(rows: Iterable[Row], skip_ids: set[str]) -> FoldPass:
    """The pass over `rows` for any folds: the voided events left out; as of a time, the
    events that occurred after it skipped too (the same folds, fed less). Its callers pause
    the collector for the whole read (see `Engine.views`)."""

    def fold_pass(folds: Sequence[Fold[Any]], as_of: datetime | None) -> list[Any]:
        bound = None if as_of is None else format_time(as_of)
        return fold_rows(rows, folds, skip_ids, bound)

    return fold_pass


def _stream(kind: str, user_id: str | None) -> str | None:
    return originator_id(kind, user_id) if user_id else None  # type: ignore[arg-type]


def opening_ids_or_none(cmd: Interaction) -> tuple[str | None, str | None]:
    try:
        return opening_ids(cmd)
    except DealEngineError:
        return None, None  # decide() reports it


def _as(cls: type[T], value: object) -> T:
    """Narrow a loaded state to the aggregate type its stream prefix promises."""
    return cast(T, value)
