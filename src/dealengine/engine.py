"""The facade an embedding product uses: record interactions, read leads and deals, get views.

Thin: the parts are built by dealengine.bootstrap; reads go to the states (service/states.py),
the reports (service/reports.py), the live views (views/live.py) and the what-if; the write
path decides, evolves and appends at the expected version, retrying on conflict.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from dealengine.audit.verify import (
    Finding,
    ManifestWriter,
    Seal,
    SealEntry,
    VerifyReport,
    check_seal_log,
    read_manifest,
    verify,
)
from dealengine.bootstrap import Clock, bootstrap, utc_now
from dealengine.domain.corrections import decide_void
from dealengine.domain.deal import OPENING_TYPES, Deal, opening_ids
from dealengine.domain.decider import State, decide
from dealengine.domain.definitions import FunnelDefinition, PipelineDefinition, Pipelines
from dealengine.domain.errors import (
    ConcurrencyConflict,
    DealEngineError,
    InvalidEvent,
    VersionConflict,
)
from dealengine.domain.events import EVENT_TYPES, DomainEvent, format_time, originator_id
from dealengine.domain.interaction import Interaction
from dealengine.domain.lead import Lead
from dealengine.domain.replay import Moment, TimelineEntry, replay
from dealengine.logs import get_logger
from dealengine.projections.funnel import FunnelView
from dealengine.projections.pipeline import DealStageTimes, PipelineChanges, PipelineView
from dealengine.projections.stream import StreamEvent
from dealengine.settings import Settings
from dealengine.store.cache import StateCache
from dealengine.subscriptions.dispatch import Handler
from dealengine.subscriptions.tables import Position
from dealengine.views.materialised import Lag, MaterialisedView, ProjectionName

if TYPE_CHECKING:  # imported when used: dealengine.whatif builds on this module
    from dealengine.whatif.result import WhatIf
    from dealengine.whatif.run import ScenarioLike

log = get_logger("dealengine.engine")

MAX_ATTEMPTS = 8
CACHE_LIMIT = 200_000
_MISSING: Any = object()  # not in a dict (None is a state: no events)


class Recorded(NamedTuple):
    """What one command stored: its events, or none when its idempotency key was seen before."""

    events: list[DomainEvent]

    @property
    def duplicate(self) -> bool:
        return not self.events


Outcome = Recorded | DealEngineError
Command = Interaction | list[Interaction]  # a list: one unit, stored whole or not at all
Events = list[DomainEvent]


class Engine:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        pipeline: PipelineDefinition | Pipelines | None = None,
        funnel: FunnelDefinition | None = None,
        clock: Clock = utc_now,
    ) -> None:
        parts = bootstrap(settings, pipeline=pipeline, funnel=funnel, clock=clock)
        self.settings, self.store, self.clock = parts.settings, parts.store, parts.clock
        self.pipelines, self.funnel_definition = parts.pipelines, parts.funnel
        self.pipeline_definition = self.pipelines.default
        self.states, self.reports, self.live = parts.states, parts.reports, parts.live
        self.passes = parts.passes
        self.subscriptions, self.keys = parts.subscriptions, parts.keys
        self._apply = parts.evolve
        self._load = parts.states.load
        self._cache: StateCache[State] = StateCache(CACHE_LIMIT)  # may be stale: see store/cache
        # One writer at a time in this process: decide, append and publish as one step, so
        # threads sharing this engine wait for each other instead of conflicting and retrying.
        # (Both stores take one lock per insert anyway: SQLite's, and eventsourcing's table
        # lock on PostgreSQL.) Readers take no lock.
        self._write_lock = threading.Lock()
        self._retries = 0
        self._key = self.settings.audit_key_bytes()  # the hashes' HMAC key, if any

    @classmethod
    def in_memory(cls, **kwargs: Any) -> Engine:
        """An engine on a private in-memory SQLite store (for tests and experiments)."""
        return cls(Settings(db=":memory:", database_url=None), **kwargs)

    @property
    def retries(self) -> int:
        """Writes re-read and re-decided because another writer stored a version of the same
        lead or deal first (in another process: this engine's own threads take turns)."""
        return self._retries

    def close(self) -> None:
        self.subscriptions.close()
        self.live.close()
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

    def execute_batch(self, commands: Sequence[Command], *, strict: bool = False) -> list[Outcome]:
        """Decide every command in order and store all their events in one transaction.

        A refused command gets its error in the result and stores nothing; the others are
        kept (with `strict`, the first refusal ends the batch and nothing is stored). A list of
        commands (a CSV row's events) is one unit: decided together and stored whole, its
        outcome all of their events, or its first refusal and nothing (nor any effect on the
        commands after it). When another writer got there first, the batch is re-read and
        re-decided, a few times.
        """
        touched: set[str] = set()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            with self._write_lock:
                outcomes, pending, work = self._decide_all(commands, strict)
                touched = set(work)
                if strict and outcomes and isinstance(outcomes[-1], DealEngineError):
                    return outcomes  # the copies hold the refused batch's events: not kept
                if not pending:
                    self._cache.publish(work)  # the states as read: complete
                    return outcomes
                try:
                    self.store.append(pending)
                except VersionConflict:  # another writer appended first: re-read, re-decide
                    self._cache.discard(touched)
                    self._retries += 1
                else:
                    self._cache.publish(work)
                    return outcomes
            time.sleep(random.uniform(0, 0.01 * attempt))  # the lock is free while waiting
        raise ConcurrencyConflict(sorted(touched), MAX_ATTEMPTS)

    def check(self, commands: Sequence[Command]) -> list[Outcome]:
        """What `execute_batch(commands, strict=True)` would decide, storing nothing."""
        return self._decide_all(commands, strict=True)[0]

    def _decide_all(
        self, commands: Sequence[Command], strict: bool
    ) -> tuple[list[Outcome], list[DomainEvent], dict[str, State]]:
        """Decide commands in order on working copies of their aggregates' states.

        States come from this engine's cache when it has them; nothing is put in the cache
        here (the caller publishes the copies once they are stored). A cached state may be
        stale: a wrong acceptance is caught by the version check when saving, and a refusal
        based on a cached state is re-decided once on a fresh read before it is reported.
        """
        work, fresh = self._prefetch(commands)  # fresh: read from the store during this call
        changed: set[str] = set()  # have pending events in this batch
        used: list[str] = []
        load = self._load

        def state(stream: str) -> State:
            used.append(stream)
            current = work.get(stream, _MISSING)
            if current is _MISSING:
                current = self._cache.take([stream]).get(stream, _MISSING)
                if current is _MISSING:
                    current = load(stream)
                    fresh.add(stream)
                work[stream] = current
            return cast(State, current)

        now = self.clock()
        pipelines = self.pipelines
        evolve = self._apply  # by event class (evolve[type(event)]): one call per event, not two
        key = self._key

        def decide_one(cmd: Interaction, undo: dict[str, tuple[State, bool]] | None) -> Events:
            """`cmd`'s events, applied to the working states (their prior states kept in
            `undo`, for a unit), or the error refusing it."""
            used.clear()
            try:
                events = decide(pipelines, cmd, state, now, key)
            except DealEngineError:
                doubtful = {s for s in used if s not in fresh and s not in changed}
                if not doubtful:
                    raise
                for stream in doubtful:
                    work[stream] = load(stream)
                    fresh.add(stream)
                events = decide(pipelines, cmd, state, now, key)
            except Exception as e:  # a value the boundary did not foresee: this command alone
                log.exception("engine.unforeseen", type=cmd.event_type, target=cmd.target)
                raise InvalidEvent(f"cannot be recorded: {type(e).__name__}: {e}") from e
            for event in events:
                stream = event.originator_id
                prior = work.get(stream, _MISSING)  # decide() read it: no second state() call
                if prior is _MISSING:
                    prior = state(stream)
                if undo is not None and stream not in undo:
                    undo[stream] = (cast(State, prior), stream in changed)
                work[stream] = evolve[type(event)](cast(State, prior), event)
                changed.add(stream)
            return events

        def decide_unit(unit: list[Interaction]) -> Events:
            """All of the unit's events, or its first refusal with the states as they were."""
            undo: dict[str, tuple[State, bool]] = {}
            events: Events = []
            try:
                for cmd in unit:
                    events.extend(decide_one(cmd, undo))
            except DealEngineError:
                for stream, (prior, was_changed) in undo.items():
                    work[stream] = prior
                    if not was_changed:
                        changed.discard(stream)
                raise
            return events

        outcomes: list[Outcome] = []
        pending: list[DomainEvent] = []
        for cmd in commands:
            try:
                events = decide_unit(cmd) if isinstance(cmd, list) else decide_one(cmd, None)
            except DealEngineError as e:
                outcomes.append(e)
                if strict:
                    break
                continue
            pending.extend(events)
            outcomes.append(tuple.__new__(Recorded, (events,)))  # Recorded(events), one call less
        return outcomes, pending, work

    def _prefetch(self, commands: Sequence[Command]) -> tuple[dict[str, State], set[str]]:
        """Working copies of the states of the streams the commands name: the cached ones, and
        the others read from the store in one go (also returned as the set of those read)."""
        wanted: set[str] = set()
        add = wanted.add
        for cmd in _each(commands):
            event_type = cmd.event_type
            if event_type in OPENING_TYPES:
                deal_id, lead_id = opening_ids_or_none(cmd)
                wanted.update(s for s in (_stream("deal", deal_id), _stream("lead", lead_id)) if s)
            else:  # originator_id(kind, target), as decide() names it
                add(f"{EVENT_TYPES[event_type].aggregate}:{cmd.target}")
        work = self._cache.take(wanted)
        missing = sorted(wanted - work.keys())
        if missing:
            events = self.store.events_of(missing)
            work.update(dict.fromkeys(missing))  # no events: None (what replay gives)
            for stream, found in events.items():
                work[stream] = replay(found, self._apply)
        return work, set(missing)

    # --- reading -------------------------------------------------------------------------------

    def lead(
        self, lead_id: str, *, as_of: Moment = None, known_at: Moment = None,
        version: int | None = None,
    ) -> Lead:  # fmt: skip
        """The lead now, or as of a time (what had happened by then, by occurred_at), as known
        at a time (what was recorded by then), or at a version (dealengine.domain.replay)."""
        return self.states.lead(lead_id, as_of, known_at, version)

    def deal(
        self, deal_id: str, *, as_of: Moment = None, known_at: Moment = None,
        version: int | None = None,
    ) -> Deal:  # fmt: skip
        """The deal now, or as of / known at a time, or at a version (like `lead`)."""
        return self.states.deal(deal_id, as_of, known_at, version)

    def history(
        self, id: str, *, as_of: Moment = None, known_at: Moment = None,
        version: int | None = None,
    ) -> list[DomainEvent]:  # fmt: skip
        """Every event of one lead or deal, in order (`id` may be `lead:ID` or `deal:ID`); the
        ones that count as of / known at a time, or up to a version, when given."""
        return self.states.history(id, as_of, known_at, version)

    def timeline(
        self, id: str, *, as_of: Moment = None, known_at: Moment = None,
        version: int | None = None,
    ) -> list[TimelineEntry]:  # fmt: skip
        """`history` with the state after each event and which correction voids it."""
        return self.states.timeline(id, as_of, known_at, version)

    def events(self, gt: int = 0) -> Iterator[StreamEvent]:
        """The whole event stream in recorded order, as the folds see it: without voided
        events and without the `event_voided` events themselves."""
        return self.passes.events(gt)

    def views(
        self, *, as_of: datetime | None = None, pipeline_name: str | None = None
    ) -> tuple[FunnelView, PipelineView]:
        """Funnel and pipeline, rebuilt together in one pass over the stream."""
        return self.reports.views(as_of=as_of, pipeline_name=pipeline_name)

    def funnel(self, *, as_of: datetime | None = None, **overrides: Any) -> FunnelView:
        """The funnel from the events that occurred by `as_of` (default: all of them).

        `overrides` replace keys of the funnel definition for this call: mode,
        conversion_window_days, attribution, breakdowns, cohort, exclusions, steps.
        """
        return self.reports.funnel(as_of=as_of, **overrides)

    def pipeline(
        self, *, as_of: datetime | None = None, pipeline_name: str | None = None
    ) -> PipelineView:
        """A pipeline (default: the first) from the events that occurred by `as_of`."""
        return self.reports.pipeline(as_of=as_of, pipeline_name=pipeline_name)

    def stage_times(
        self, *, as_of: datetime | None = None, pipeline_name: str | None = None
    ) -> list[DealStageTimes]:
        """Every deal's stays in each stage: entered, left, latest and cumulative days."""
        return self.reports.stage_times(as_of=as_of, pipeline_name=pipeline_name)

    def pipeline_changes(
        self, start: datetime, end: datetime, *, pipeline_name: str | None = None
    ) -> PipelineChanges:
        """How the open pipeline moved between two dates (one pass: two as-of folds)."""
        return self.reports.pipeline_changes(start, end, pipeline_name=pipeline_name)

    # --- materialised views ----------------------------------------------------------------

    def view(self, name: ProjectionName) -> MaterialisedView:
        """The materialised `funnel` or `pipeline` view (tables beside the store)."""
        return self.live.view(name)

    def live_funnel(self, *, catch_up: bool = True) -> tuple[FunnelView, Lag]:
        """The funnel from its materialised view (brought up to date first, unless a worker
        owns it); the Lag says how far behind the stream it is."""
        return self.live.funnel(catch_up=catch_up)

    def live_pipeline(
        self, *, pipeline_name: str | None = None, catch_up: bool = True
    ) -> tuple[PipelineView, Lag]:
        name = self.reports.projection(pipeline_name).definition.name
        return self.live.pipeline(name, catch_up=catch_up)

    def follow(self, names: Sequence[ProjectionName], poll: float = 1.0) -> None:
        """Run as a projection worker on PostgreSQL until SIGINT/SIGTERM (see views/worker.py)."""
        self.live.follow(names, poll)

    # --- subscriptions ----------------------------------------------------------------------

    def subscribe(self, name: str, handler: Handler, **options: Any) -> Position:
        """A durable subscriber: every event and derived notice, in recorded order, at least
        once (exactly once for a `transactional` handler's own writes); see
        dealengine.subscriptions.dispatch for `types`, `from_start`, `retry`, `run`."""
        return self.subscriptions.subscribe(name, handler, **options)

    # --- audit: corrections, tamper evidence -----------------------------------------------

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
        and what is refused: dealengine.domain.corrections). Nothing is rewritten."""
        stream = self.states.which(id)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            with self._write_lock:  # see execute_batch
                events = cast(list[DomainEvent], self.store.events(stream))
                void = decide_void(
                    self.pipelines, self._apply, stream, events, event_id, reason=reason,
                    actor=actor, source=source, idempotency_key=idempotency_key,
                    now=self.clock(), key=self._key,
                )  # fmt: skip
                if void is None:
                    return Recorded([])
                try:
                    self.store.append([void])
                except VersionConflict:  # another writer appended first: re-read, re-decide
                    self._retries += 1
                else:
                    self._cache.publish({stream: replay([*events, void], self._apply)})
                    return Recorded([void])
            time.sleep(random.uniform(0, 0.01 * attempt))
        raise ConcurrencyConflict([stream], MAX_ATTEMPTS)

    def verify(
        self,
        *,
        seal: str | None = None,
        manifest: Path | None = None,
        seals: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> VerifyReport:
        """Recompute every stream's hash chain and each event's own hash (under the audit key,
        if set), streaming the store; with a `seal` (and its `manifest`), also compare the
        streams with it; with `seals`, check the seal log's chain and each of its seals
        against the store, and that a given `seal` is in it (dealengine.audit.verify)."""
        sealed = Seal.parse(seal) if seal else None
        if manifest is not None and sealed is None:
            raise DealEngineError("a manifest is checked against its seal: give the seal too")
        summaries = read_manifest(manifest, sealed) if manifest and sealed else None
        log_findings: list[Finding] = []
        usable: list[SealEntry] = []
        unchecked = 0
        if seals:
            entries = [SealEntry(*row) for row in self.store.recorder.seal_log()]
            log_findings, usable, unchecked = check_seal_log(entries, self._key, sealed)
        report = verify(
            self.store.by_stream(),
            self.store.position(),
            seal=sealed,
            manifest=summaries,
            progress=progress,
            key=self._key,
            log=usable,
        )
        report.findings[:0] = log_findings
        report.unchecked += unchecked
        if seals:
            report.seals = len(entries)
        return report

    def seal(
        self, *, manifest: Path | None = None, progress: Callable[[int], None] | None = None
    ) -> VerifyReport:
        """The store's seal at its current position (`report.sealed`; keep it outside the
        system), checking every chain on the way; with `manifest`, also write the seal's
        per-stream manifest there. A seal of a store found intact is appended to the seal
        log (`report.seals`: its number; 0 when it was not)."""
        position = self.store.position()
        if manifest is None:
            report = verify(self.store.by_stream(), position, progress=progress, key=self._key)
        else:
            with ManifestWriter(manifest) as write:
                report = verify(
                    self.store.by_stream(),
                    position,
                    progress=progress,
                    on_summary=write,
                    key=self._key,
                )
                assert report.sealed is not None
                write.close(report.sealed)
        assert report.sealed is not None
        if report.ok:
            log = self.store.recorder.seal_log()
            last = SealEntry(*log[-1]) if log else None
            entry = SealEntry.after(last, report.sealed, format_time(self.clock()), self._key)
            self.store.recorder.append_seal(entry)
            report.seals = entry.number
        return report

    # --- what-if ---------------------------------------------------------------------------

    def what_if(
        self, scenario: ScenarioLike, *, as_of: datetime | None = None,
        pipeline_name: str | None = None,
    ) -> WhatIf:  # fmt: skip
        """The views under a scenario (a TOML file, a `Scenario`, or a mapping of its keys)
        beside the baseline, from one read of the store; nothing is written. See
        `what_ifs` and projections/scenarios/README.md."""
        return self.what_ifs([scenario], as_of=as_of, pipeline_name=pipeline_name)

    def what_ifs(
        self, scenarios: Sequence[ScenarioLike], *, as_of: datetime | None = None,
        pipeline_name: str | None = None,
    ) -> WhatIf:  # fmt: skip
        """The baseline (as of `as_of`, pipeline `pipeline_name`, like `views`) and every
        scenario, folded in the same pass over the stream (dealengine.whatif; the collector
        paused there, as in views())."""
        from dealengine.whatif.run import run_what_if

        return run_what_if(
            self, scenarios, self.passes.over_partitions, as_of=as_of,
            pipeline_name=pipeline_name,
        )  # fmt: skip


def _each(commands: Sequence[Command]) -> Iterator[Interaction]:
    for cmd in commands:
        if isinstance(cmd, list):
            yield from cmd
        else:
            yield cmd


def _stream(kind: str, user_id: str | None) -> str | None:
    return originator_id(kind, user_id) if user_id else None  # type: ignore[arg-type]


def opening_ids_or_none(cmd: Interaction) -> tuple[str | None, str | None]:
    try:
        return opening_ids(cmd)
    except DealEngineError:
        return None, None  # decide() reports it
