"""The write path: decide each command on its lead's and deal's states, evolve them, append
the events at the expected versions in one transaction, retry when another writer got there
first. One writer at a time per Engine (its threads take turns); other processes are kept
apart by optimistic concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, cast

from dealengine.domain.catalogue import Interactions
from dealengine.domain.corrections import decide_void
from dealengine.domain.deal import OPENING_TYPES, opening_ids
from dealengine.domain.decider import Evolvers, decide
from dealengine.domain.definitions import Pipelines
from dealengine.domain.errors import (
    DealEngineError,
    InvalidEvent,
    UndefinedInModel,
    VersionConflict,
)
from dealengine.domain.events import DomainEvent
from dealengine.domain.interaction import (
    Command,
    Interaction,
    InteractionFields,
    Outcome,
    Recorded,
)
from dealengine.domain.lead import Lead, decide_forget
from dealengine.domain.personal import LeadKeys
from dealengine.domain.replay import State, replay
from dealengine.domain.streams import AggregateKind, lead_stream, stream_of
from dealengine.domain.values import check_identifier
from dealengine.logs import get_logger
from dealengine.service.personal import Sealer
from dealengine.service.writes import retried
from dealengine.store.application import Store
from dealengine.store.cache import StateCache

log = get_logger("dealengine.commands")

CACHE_LIMIT = 200_000
_MISSING: Any = object()  # not in a dict (None is a state: no events)


Events = list[DomainEvent]


class Commands:
    def __init__(
        self,
        store: Store,
        pipelines: Pipelines,
        evolve: Evolvers,
        load: Callable[[str], State],
        which: Callable[[str], str],
        clock: Callable[[], datetime],
        key: bytes | None,
        lead_keys: LeadKeys,
    ) -> None:
        self.store, self.pipelines, self.clock = store, pipelines, clock
        self._apply, self._load, self._which, self._key = evolve, load, which, key
        self.lead_keys = lead_keys  # personal values are sealed with their lead's key
        self._cache: StateCache[State] = StateCache(CACHE_LIMIT)  # may be stale: see store/cache
        # One writer at a time in this process: decide, append and publish as one step, so
        # threads sharing this engine wait for each other instead of conflicting and retrying.
        # (Both stores take one lock per insert anyway: SQLite's, and eventsourcing's table
        # lock on PostgreSQL.) Readers take no lock.
        self._write_lock = threading.Lock()
        self._retries = 0

    @property
    def interactions(self) -> Interactions:
        """The interactions a command may record (the store's model's)."""
        return self.store.interactions

    @property
    def retries(self) -> int:
        """Writes re-read and re-decided because another writer stored a version of the same
        lead or deal first (in another process: this engine's own threads take turns)."""
        return self._retries

    def execute_batch(self, commands: Sequence[Command], *, strict: bool = False) -> list[Outcome]:
        """Decide every command in order and store all their events in one transaction.

        A refused command gets its error in the result and stores nothing; the others are
        kept (with `strict`, the first refusal ends the batch and nothing is stored). A list of
        commands (a CSV row's events) is one unit: decided together and stored whole, its
        outcome all of their events, or its first refusal and nothing (nor any effect on the
        commands after it). When another writer got there first, the batch is re-read and
        re-decided, a few times.
        """
        touched: list[str] = []

        def write() -> list[Outcome]:
            outcomes, pending, work = self._decide_all(commands, strict, dry=False)
            touched[:] = work
            if strict and outcomes and isinstance(outcomes[-1], DealEngineError):
                return outcomes  # the copies hold the refused batch's events: not kept
            if pending:
                try:
                    self.store.append(pending)
                except VersionConflict:  # another writer appended first: re-read, re-decide
                    self._cache.discard(set(work))
                    self._retries += 1
                    raise
            self._cache.publish(work)  # the states as read (complete) or as stored
            return outcomes

        return retried(self._write_lock, write, lambda: touched)

    def check(self, commands: Sequence[Command]) -> list[Outcome]:
        """What `execute_batch(commands, strict=True)` would decide, storing nothing."""
        return self._decide_all(commands, strict=True, dry=True)[0]

    def _decide_all(
        self, commands: Sequence[Command], strict: bool, *, dry: bool
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
        sealer = Sealer(self.lead_keys, create=not dry)
        sealer.prefetch(_each(commands))

        def decide_one(cmd: Interaction, undo: dict[str, tuple[State, bool]] | None) -> Events:
            """`cmd`'s events, applied to the working states (their prior states kept in
            `undo`, for a unit), or the error refusing it."""
            used.clear()
            cmd = sealer.sealed(cmd, state)  # before deciding: no error shows a plaintext
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
            else:
                add(stream_of(cmd.event_class.aggregate, cmd.target))
        work = self._cache.take(wanted)
        missing = sorted(wanted - work.keys())
        if missing:
            events = self.store.events_of(missing)
            work.update(dict.fromkeys(missing))  # no events: None (what replay gives)
            for stream, found in events.items():
                try:
                    work[stream] = replay(found, self._apply)
                except UndefinedInModel:  # refused to the commands that name it, when read
                    del work[stream]
        return work, set(missing)

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
        stream = self._which(id)

        def decided() -> tuple[DomainEvent, State] | None:
            events = cast(list[DomainEvent], self.store.events(stream))
            void = decide_void(
                self.pipelines, self._apply, stream, events, event_id, reason=reason,
                actor=actor, source=source, idempotency_key=idempotency_key,
                now=self.clock(), key=self._key,
            )  # fmt: skip
            return None if void is None else (void, replay([*events, void], self._apply))

        return self._record_one(stream, decided)

    def forget(
        self, lead_id: str, *, reason: str, actor: str = "api", source: str = "api"
    ) -> Recorded:
        """Erase the lead's personal data: destroy its key, then record `lead_forgotten` (who,
        when, why). Its sealed values read `[erased]` from then on; its later ones get a new
        key. Run again after a failure: the key is destroyed first, the event follows."""
        try:
            check_identifier(lead_id, "lead_id")
        except ValueError as e:
            raise InvalidEvent(str(e)) from None
        stream = lead_stream(lead_id)

        def decided() -> tuple[DomainEvent, State]:
            lead = cast(Lead | None, self._load(stream))
            now = self.clock()
            cmd = InteractionFields("lead_forgotten", lead_id, now, {}, actor, source, None)
            event = decide_forget(lead, cmd, reason, self._key)
            destroyed = self.lead_keys.destroy(lead_id)
            log.info("lead.forgotten", lead=lead_id, keys_destroyed=destroyed)
            return event, self._apply[type(event)](lead, event)

        return self._record_one(stream, decided)

    def _record_one(
        self, stream: str, decided: Callable[[], tuple[DomainEvent, State] | None]
    ) -> Recorded:
        """Append the one event `decided()` gives on `stream` (with the stream's state after
        it; None: nothing to record), under the write lock; when another writer appended to
        the stream first, re-read and re-decide, a few times."""

        def write() -> Recorded:
            found = decided()
            if found is None:
                return Recorded([])
            event, after = found
            try:
                self.store.append([event])
            except VersionConflict:  # another writer appended first: re-read, re-decide
                self._retries += 1
                raise
            self._cache.publish({stream: after})
            return Recorded([event])

        return retried(self._write_lock, write, lambda: [stream])


def _each(commands: Sequence[Command]) -> Iterator[Interaction]:
    for cmd in commands:
        if isinstance(cmd, list):
            yield from cmd
        else:
            yield cmd


def _stream(kind: AggregateKind, user_id: str | None) -> str | None:
    return stream_of(kind, user_id) if user_id else None


def opening_ids_or_none(cmd: Interaction) -> tuple[str | None, str | None]:
    try:
        return opening_ids(cmd)
    except DealEngineError:
        return None, None  # decide() reports it
