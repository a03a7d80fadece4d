"""Materialised funnel and pipeline views: the in-memory folds, applied batch by batch.

A catch-up run reads the events recorded since the view's position in batches and folds them
with the SAME fold the in-memory views use, holding the states it folds (`Held`); a lead or
deal it does not hold is folded from its stream's earlier events when a batch touches it (the
counters it added taken off). Then it adds the counters of every lead or deal it touched and
writes them with its position, in one transaction. A view stores no lead's or deal's state:
the store's streams are that state. A run that starts from an empty view holds every state
from the start, so building a view is one fold of the stream and one count, as `--full` is.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice
from typing import Any, Literal, Protocol

import orjson
from eventsourcing.persistence import Tracking

from dealengine.domain.catalogue import Interactions
from dealengine.domain.errors import DealEngineError, VersionConflict
from dealengine.domain.streams import DEAL_MARK, LEAD_PREFIX, deal_stream, id_of, lead_stream
from dealengine.logs import get_logger
from dealengine.projections.funnel import (
    Combination,
    FunnelProjection,
    FunnelState,
    FunnelView,
    in_partition,
)
from dealengine.projections.pipeline import DealFacts, PipelineProjection, PipelineView
from dealengine.projections.stream import (
    VOIDED,
    StreamEvent,
    Topics,
    collector_paused,
    corrected,
    deals_only,
    decode,
)
from dealengine.store.recorders import Partition, Row
from dealengine.views.counters import (
    ZERO,
    Amounts,
    Key,
    add_amounts,
    add_combinations,
    count_combinations,
    funnel_from_counters,
    pipeline_counters,
    pipeline_from_counters,
)
from dealengine.views.signals import interrupts_between_batches
from dealengine.views.tables import Counter, ViewTables
from dealengine.views.tables import Row as Row4

log = get_logger("dealengine.views")

ProjectionName = Literal["funnel", "pipeline"]
PROJECTIONS: tuple[ProjectionName, ...] = ("funnel", "pipeline")
BATCH = 100_000  # events per read (Settings.view_batch)
HELD = 1_000_000  # leads and deals a catch-up run holds at most (about 0.8 KB each)
SEP = "\x1f"


class OutOfDate(DealEngineError):
    """The definition changed since the view was built: mixing old and new rules is refused."""


class NewCorrection(Exception):
    """An event_voided the view has not applied: it must be rebuilt without the voided event."""


class Source(Protocol):
    """Where events come from: the engine's store."""

    interactions: Interactions  # how its topics are read

    def voided_ids(self, stop: int | None = None) -> set[str]: ...

    def stream(
        self,
        gt: int = 0,
        stop: int | None = None,
        part: Partition | None = None,
        *,
        deals: bool = False,
    ) -> Iterator[Row]: ...

    def stream_rows(self, ids: Sequence[str], stop: int) -> list[Row]: ...

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


@dataclass(slots=True)
class Held:
    """What a catch-up run holds until it writes the view: the fold state, as of the position
    it has folded to; the leads and deals it folded from the store (`leads`, `deals`, as
    streams); those its batches touched (`touched`: the funnel's lead ids, the pipeline's deal
    streams); and the counters' moves so far (`moved`, the adapter's tally): what the ones
    folded from the store added when the view was last written, taken off. The write adds
    what each touched one adds now. A run that began with the view empty (`from_start`)
    holds every lead and deal it met, but those it let go (`gone`): the others have no
    earlier events, and it counts them all at the write."""

    state: Any
    from_start: bool
    leads: set[str] = field(default_factory=set)
    deals: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)
    moved: dict[Any, Any] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        """Whether it holds every lead and deal with earlier events: nothing to fold first."""
        return self.from_start and not self.gone

    def unfolded(self, streams: set[str], folded: set[str]) -> set[str]:
        """Those of `streams` whose earlier events it does not hold (`folded`: those it
        folded from the store)."""
        return (streams & self.gone if self.from_start else streams) - folded

    def let_go(self, streams: set[str], initial: Any) -> None:
        """Drop every state (`streams`: those it holds), starting again from `initial`; the
        view has just been written."""
        if self.from_start:
            self.gone |= streams | self.leads | self.deals
        self.state, self.moved = initial, {}
        self.leads, self.deals, self.touched = set(), set(), set()


@dataclass(frozen=True, slots=True)
class Batch:
    """The rows a batch reads after position `after` (its streams: `streams`); its events as
    the view applies them; and the events of streams up to its last position (`read`)."""

    rows: list[Row]
    streams: set[str]
    after: int
    topics: Topics
    skip: set[str]  # the events voided before the run: left out, their voids too
    read: Callable[[Collection[str]], list[StreamEvent]]

    def events(self, types: Collection[str]) -> Iterator[StreamEvent]:
        """The batch's events of `types`, in order; a void of anything but `skip` raises
        NewCorrection (a correction cannot be taken away from counters)."""
        skip = self.skip
        for event in decode(self.rows, self.topics, types=types):
            if event.type != VOIDED:
                if event.data["id"] not in skip:
                    yield event
            elif event.data["voided_event_id"] not in skip:
                raise NewCorrection(event.data["voided_event_id"])

    def earlier(self, streams: Collection[str]) -> list[StreamEvent]:
        """The events of `streams` up to `after` (what the view applied before the batch)."""
        return [e for e in self.read(streams) if e.position <= self.after]


class Adapter(Protocol):
    """What a projection needs to be materialised: its fold state and its counters."""

    definition_digest: str
    event_types: Collection[str]  # what its folds read: the other events are not decoded
    deals_only: bool  # it reads the deals' streams only

    def initial(self) -> Any: ...

    def size(self, state: Any) -> int: ...

    def streams(self, state: Any) -> set[str]:
        """The streams of the leads and deals `state` holds something of."""
        ...

    def process(self, batch: Batch, held: Held) -> None:
        """Fold `batch` into the `held` state, noting what it touched."""
        ...

    def changes(self, tables: ViewTables, view: str, held: Held) -> dict[str, Counter]:
        """The counters `held` moved since `view` was written, with their new totals."""
        ...

    def read(self, rows: Iterable[tuple[str, int, str | None, str | None]]) -> Any: ...


class FunnelAdapter:
    """The funnel's state: the fold's, of the leads of its partition; counters per step."""

    def __init__(self, fold: FunnelProjection) -> None:
        self.fold = fold
        self.definition_digest = digest(fold.definition)
        self.event_types: Collection[str] = fold.event_types
        self.deals_only = False

    def initial(self) -> FunnelState:
        return self.fold.initial()

    def size(self, state: FunnelState) -> int:
        return len(state.earliest) + len(state.lead_of_deal)

    def streams(self, state: FunnelState) -> set[str]:
        leads = set(state.earliest).union(state.sequence, state.excluded, *state.touches.values())
        return {lead_stream(lead) for lead in leads} | set(state.lead_of_deal)

    def process(self, batch: Batch, held: Held) -> None:
        """Hold every lead the batch touches, apply its events, note the leads it touched
        (a run holding every lead counts them all)."""
        state, complete = held.state, held.complete
        if not complete:
            self._hold(batch, held)
        apply = self.fold.apply
        for event in batch.events(self.event_types):
            apply(state, event)
        if not complete:
            held.touched |= self._touched(batch, state)

    def changes(self, tables: ViewTables, view: str, held: Held) -> dict[str, Counter]:
        """Move each touched lead's count from what it added when `view` was written (taken
        off in `held.moved`) to what it adds now."""
        moved: dict[Combination, int] = held.moved
        leads = None if held.complete else held.touched
        count_combinations(self.fold, held.state, leads, +1, moved)
        counts: dict[Key, int] = {}
        add_combinations(self.fold, moved, counts)
        totals = tables.counter_rows(view, (SEP.join(k) for k in counts))
        changed: dict[str, Counter] = {}
        for key, delta in counts.items():
            name = SEP.join(key)
            if delta:
                n = totals.get(name, (0, None, None))[0] + delta
                changed[name] = (n, None, None)
        return changed

    def _touched(self, batch: Batch, state: FunnelState) -> set[str]:
        """The leads the batch's events were applied to (after them: a deal it opened names
        its lead): those of its lead streams, and the leads of its deals."""
        known = state.lead_of_deal
        return _leads_of(batch.streams) | {known[s] for s in batch.streams if s in known}

    def _hold(self, batch: Batch, held: Held) -> None:
        """Fold into the held state the leads the batch touches that the run does not hold,
        with their deals, from their streams' earlier events; take off what each added."""
        deals = held.unfolded({s for s in batch.streams if s[0] == DEAL_MARK}, held.deals)
        leads = _leads_of(batch.streams) | _opened_by(batch.events(("deal_opened",)))
        unheld = batch.earlier(deals)  # a deal's earlier events name its lead (deal_opened)
        leads |= _opened_by(unheld)
        held.deals |= deals
        part = self.fold.partition
        if part is not None:  # the leads of other partitions are not counted here
            leads = {lead for lead in leads if in_partition(lead_stream(lead), part)}
        streams = held.unfolded({lead_stream(lead) for lead in leads}, held.leads)
        if not streams:
            return
        own = batch.read(streams)
        # up to the batch's end: a deal opened before it may be converted in it
        deals = {deal_stream(e.data["deal_id"]) for e in own if e.type == "lead_converted"}
        read = {e.stream for e in unheld}
        theirs = [e for e in unheld if e.stream in deals] + batch.earlier(deals - read)
        types, apply, state, after = self.event_types, self.fold.apply, held.state, batch.after
        for event in sorted(own + theirs, key=_position):
            if event.type in types and event.position <= after:
                apply(state, event)
        held.leads |= streams
        held.deals |= deals
        leads = _leads_of(streams)
        held.touched |= leads
        count_combinations(self.fold, state, leads, -1, held.moved)

    def read(self, rows: Iterable[tuple[str, int, str | None, str | None]]) -> FunnelView:
        return funnel_from_counters(self.fold, {tuple(k.split(SEP)): n for k, n, _, _ in rows})


def _leads_of(streams: Iterable[str]) -> set[str]:
    """The lead ids of the lead streams among `streams`."""
    return {id_of(s) for s in streams if s.startswith(LEAD_PREFIX)}


def _opened_by(events: Iterable[StreamEvent]) -> set[str]:
    """The leads the deals opened in `events` belong to."""
    return {e.data["lead_id"] for e in events if e.type == "deal_opened" and e.data.get("lead_id")}


def _position(event: StreamEvent) -> int:
    return event.position


class PipelineAdapter:
    """The pipelines' state: each fold's, of the deals of its partition; counters keyed by
    pipeline."""

    def __init__(
        self, folds: Sequence[PipelineProjection], partition: Partition | None = None
    ) -> None:
        self.partition = partition  # this view holds the deals of this partition only
        self.folds = {f.definition.name: f for f in folds}
        self.definition_digest = digest_all(f.definition for f in folds)
        self.event_types: Collection[str] = frozenset().union(*(f.event_types for f in folds))
        self.deals_only = deals_only(folds)

    def initial(self) -> dict[str, dict[str, DealFacts]]:
        return {name: {} for name in self.folds}

    def size(self, state: dict[str, dict[str, DealFacts]]) -> int:
        return sum(len(deals) for deals in state.values())

    def streams(self, state: dict[str, dict[str, DealFacts]]) -> set[str]:
        return set().union(*state.values())

    def process(self, batch: Batch, held: Held) -> None:
        """Fold the batch's deals (it reads no other stream) into the `held` states: those not
        held, their earlier events first, taking off what they added when the view was
        written."""
        states: dict[str, dict[str, DealFacts]] = held.state
        if not held.complete:
            unheld = held.unfolded(batch.streams, held.deals)
            self._apply(states, batch.earlier(unheld))
            self._count(states, unheld, -1, held.moved)
            held.deals |= batch.streams
            held.touched |= batch.streams
        self._apply(states, batch.events(self.event_types))

    def changes(self, tables: ViewTables, view: str, held: Held) -> dict[str, Counter]:
        """Add what each touched deal adds now to `held.moved`: the counters' new totals."""
        amounts: dict[Key, Amounts] = held.moved
        self._count(held.state, None if held.complete else held.touched, +1, amounts)
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
        return changed

    def _count(
        self,
        states: dict[str, dict[str, DealFacts]],
        deals: set[str] | None,
        sign: int,
        into: dict[Key, Amounts],
    ) -> None:
        """Add `sign` times the counters of `deals` (None: all) into `into`."""
        for name, fold in self.folds.items():
            mine = states[name]
            for stream in mine.keys() if deals is None else deals & mine.keys():
                add_amounts(into, _keyed(name, pipeline_counters(fold, mine[stream])), sign)

    def _apply(
        self, states: dict[str, dict[str, DealFacts]], events: Iterable[StreamEvent]
    ) -> None:
        folds, types = list(self.folds.items()), self.event_types
        for event in events:
            if event.type in types:
                for name, fold in folds:
                    fold.apply(states[name], event)

    def read(
        self, rows: Iterable[tuple[str, int, str | None, str | None]]
    ) -> dict[str, PipelineView | None]:
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
    """One projection's view: catch up, rebuild into a new generation, read, report the lag.

    A view may be split into `partitions`: partition i of n holds the leads (funnel) or deals
    (pipeline) whose stream is in it (`projections.funnel.in_partition`), as its own view
    (`funnel#3/i`) with its own rows and position, caught up by whoever owns it (a worker on
    PostgreSQL); the view's counters are the sum of its partitions'. With one partition the
    generation is the view itself.
    """

    def __init__(
        self,
        name: ProjectionName,
        adapter_of: Callable[[Partition | None], Adapter],
        tables: ViewTables,
        source: Source,
        batch: int = BATCH,
        partitions: int = 1,
    ) -> None:
        self.name, self.tables, self.source = name, tables, source
        self.batch, self.partitions = batch, partitions
        self.adapters = {
            i: adapter_of(None if partitions == 1 else (i, partitions)) for i in range(partitions)
        }
        self.adapter = self.adapters[0]
        suffix = "" if partitions == 1 else f"/{partitions}"  # another split: another view
        self.definition_digest = self.adapter.definition_digest + suffix

    def parts(self, generation: str) -> list[str]:
        """The views holding a generation's partitions, in partition order."""
        if self.partitions == 1:
            return [generation]
        return [f"{generation}/{i}" for i in range(self.partitions)]

    def owner_key(self, partition: int) -> str:
        """What a worker locks to own a partition (the projection itself when unsplit)."""
        return self.name if self.partitions == 1 else f"{self.name}/{partition}"

    def active(self) -> str | None:
        found = self.tables.active(self.name)
        if found is None:
            return None
        view, stored_digest = found
        if stored_digest != self.definition_digest:
            raise OutOfDate(
                f"the {self.name} definition changed since its view was built "
                f"({stored_digest} -> {self.definition_digest}): "
                f"run `dealengine rebuild {self.name}`"
            )
        return view

    def lag(self) -> Lag:
        view = self.active() or f"{self.name}#0"
        return Lag(view, self._position(view), self.source.position())

    def _position(self, generation: str) -> int:
        """The last event every partition of `generation` has applied."""
        return min(self.tables.position(part) for part in self.parts(generation))

    def catch_up(
        self,
        progress: Callable[[int], None] | None = None,
        stop: Callable[[], bool] = lambda: False,
        partitions: Iterable[int] | None = None,
    ) -> int:
        """Apply every event recorded since the view's position, to `partitions` (default:
        all). With no view yet, build one: the generation being built is recorded first, so
        that the owners of the other partitions build the same one and an interrupted build
        resumes (its rows and position were written together). A correction (event_voided)
        cannot be subtracted from counters: it rebuilds the view (whoever is given partition
        0 does; the others leave their partitions as they are until it has)."""
        view = self.active()
        chosen = list(range(self.partitions)) if partitions is None else list(partitions)
        try:
            if view is not None:
                return self._run(view, chosen, progress, stop, skip=set())
            generation, target = self.tables.building(
                self.name, self._new_generation(), self.source.position()
            )
            return self._build(generation, target, chosen, progress, stop, self._skip_at_build())
        except NewCorrection:
            log.info("view.correction", projection=self.name)
            if 0 not in chosen:  # the owner of partition 0 rebuilds: one rebuild at a time
                return 0
        return self.rebuild(progress, stop)

    def rebuild(
        self,
        progress: Callable[[int], None] | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> int:
        """Replay from position 0 into a fresh generation (every partition, in this process)
        while the active one keeps answering, then switch to it atomically. Voided events are
        left out, as in every other view."""
        for _ in range(3):
            found = self.tables.active(self.name)
            for stale in self._generations():
                if found is None or stale != found[0]:
                    self.tables.drop(stale)  # an earlier rebuild that did not finish
            self.tables.forget_building(self.name)
            everything = list(range(self.partitions))
            try:
                return self._build(
                    self._new_generation(), self.source.position(), everything, progress, stop,
                    self._skip_at_build(),
                )  # fmt: skip
            except NewCorrection:  # a correction landed during the rebuild: once more
                continue
        raise DealEngineError(f"the {self.name} view: corrections keep arriving during rebuilds")

    def _generations(self) -> set[str]:
        """Generations with rows (the active one, any unfinished build)."""
        return {view.partition("/")[0] for view in self.tables.generations(self.name)}

    def _skip_at_build(self) -> set[str]:
        return self.source.voided_ids(None)

    def _build(
        self,
        generation: str,
        target: int,
        partitions: list[int],
        progress: Callable[[int], None] | None,
        stop: Callable[[], bool],
        skip: set[str],
    ) -> int:
        """Build `partitions` of `generation`; switch to it once every partition has applied
        the events up to `target` (the store's position when the build began)."""
        applied = self._run(generation, partitions, progress, stop, skip=skip)
        if not stop() and self._position(generation) >= target:
            self.tables.activate(self.name, generation, self.definition_digest)
            log.info("view.switched", projection=self.name, view=generation, events=applied)
        return applied

    def _new_generation(self) -> str:
        """A generation name never used before (its tracking row must start empty)."""
        return f"{self.name}#{time.time_ns() // 1000:x}"

    def read(self) -> tuple[Any, Lag]:
        view, rows = self.tables.counters(self.name)
        if view is None:
            raise DealEngineError(f"no {self.name} view yet: run `dealengine rebuild {self.name}`")
        self.active()  # refuses a view built under another definition
        summed = rows if self.partitions == 1 else _summed(rows)
        return self.adapter.read(summed), Lag(view, self._position(view), self.source.position())

    def _run(
        self,
        generation: str,
        partitions: list[int],
        progress: Callable[[int], None] | None,
        stop: Callable[[], bool] = lambda: False,
        *,
        skip: set[str],
    ) -> int:
        """Apply batches to each of `partitions` until the end of the stream as it is now (or
        `stop()`, between batches), leaving out the events voided in `skip`; a void of
        anything else raises NewCorrection."""
        head = self.source.position()
        applied = 0
        views = self.parts(generation)
        # each partition reads the same positions: progress in events of the stream
        share = None if progress is None else _shared(progress, len(partitions))
        for i in partitions:
            if stop():
                break
            part = None if self.partitions == 1 else (i, self.partitions)
            applied += self._apply(views[i], self.adapters[i], part, head, share, stop, skip)
        return applied // max(1, len(partitions))

    @collector_paused()  # the run's states are long-lived: see collector_paused
    def _apply(
        self,
        view: str,
        adapter: Adapter,
        part: Partition | None,
        head: int,
        progress: Callable[[int], None] | None,
        stop: Callable[[], bool],
        skip: set[str],
    ) -> int:
        """Catch one partition's view up to `head`: fold batch after batch, then write the
        counters the run moved and its position in one transaction, once it has folded up to
        `head`, when `stop()` (or Ctrl-C: `interrupts_between_batches`) ends it, and before it
        lets its states go (past HELD leads and deals; it then starts holding again). So a
        build is one fold and one count, as `--full` is."""
        applied, written = 0, self.tables.position(view)
        held = Held(adapter.initial(), from_start=written == 0)
        with interrupts_between_batches() as interrupted:

            def halted() -> bool:
                return stop() or interrupted()

            while written < head and not halted():
                position = self._fold(
                    view, adapter, part, written, head, skip, held, progress, halted
                )
                try:
                    counters = adapter.changes(self.tables, view, held)
                    self.tables.write(view, counters, Tracking(view, position), after=written)
                except VersionConflict:  # another process applied these events first
                    log.info("view.overtaken", projection=self.name, view=view, position=written)
                    written = self.tables.position(view)
                    held = Held(adapter.initial(), from_start=False)
                    continue
                log.info("view.written", projection=self.name, view=view, position=position)
                applied, written = applied + position - written, position
                if written < head and not halted():
                    held.let_go(adapter.streams(held.state), adapter.initial())
        return applied

    def _fold(
        self,
        view: str,
        adapter: Adapter,
        part: Partition | None,
        position: int,
        head: int,
        skip: set[str],
        held: Held,
        progress: Callable[[int], None] | None,
        halted: Callable[[], bool],
    ) -> int:
        """Fold batches after `position` into `held` until `head`, `halted()`, or it holds
        more than HELD leads and deals (one batch at least); the position folded up to. Each
        batch is read with a query of its own (a long-open read would hold a PostgreSQL
        transaction idle while the batch is folded, and the server ends those)."""
        topics = self.source.interactions.reading
        while True:
            began = time.perf_counter()
            reading = _reading(self.source, position, head, part, adapter.deals_only)
            with closing(reading) as rows:  # Ctrl-C too
                read = list(islice(rows, self.batch))
            # the events read count as folded; a partition's last events may be elsewhere
            last = read[-1][0] if len(read) == self.batch else head
            streams = {row[1] for row in read}
            applied = _as_applied(self.source, last, skip)
            adapter.process(Batch(read, streams, position, topics, skip, applied), held)
            if progress:
                progress(last - position)
            log.info(
                "view.batch",
                projection=self.name,
                view=view,
                position=last,
                events=len(read),
                seconds=round(time.perf_counter() - began, 3),
            )
            position = last
            if position >= head or halted() or adapter.size(held.state) > HELD:
                return position


def _shared(progress: Callable[[int], None], parts: int) -> Callable[[int], None]:
    return progress if parts == 1 else lambda n: progress(n // parts)


def _summed(rows: Iterable[Row4]) -> list[Row4]:
    """The counters of several partitions, summed per key (amounts as decimals)."""
    total: dict[str, tuple[int, Decimal | None, Decimal | None]] = {}
    for key, n, amount, weighted in rows:
        old_n, old_amount, old_weighted = total.get(key, (0, None, None))
        total[key] = (old_n + n, _plus(old_amount, amount), _plus(old_weighted, weighted))
    return [
        (key, n, None if a is None else str(a), None if w is None else str(w))
        for key, (n, a, w) in total.items()
    ]


def _plus(total: Decimal | None, amount: str | None) -> Decimal | None:
    if amount is None:
        return total
    return Decimal(amount) if total is None else total + Decimal(amount)


def _as_applied(
    source: Source, position: int, skip: set[str]
) -> Callable[[Collection[str]], list[StreamEvent]]:
    """Read streams' events up to `position` as the view applies them: the voided ones (by a
    void among them, or in `skip`) and the voids left out."""

    def read(streams: Collection[str]) -> list[StreamEvent]:
        if not streams:
            return []
        rows = source.stream_rows(sorted(streams), position)
        events = list(decode(rows, source.interactions.reading))
        voided = {e.data["voided_event_id"] for e in events if e.type == VOIDED}
        return list(corrected(events, skip | voided))

    return read


def _reading(
    source: Source, gt: int, stop: int, part: Partition | None, deals: bool
) -> Generator[Row, None, None]:
    yield from source.stream(gt, stop, part, deals=deals)


__all__ = ["PROJECTIONS", "ZERO", "Lag", "MaterialisedView", "OutOfDate"]
