"""Running subscribers: each reads the store's notifications after its tracked position, hands
every notice it wants to its handler, and moves its position past the event.

At least once: the position moves after the handler returns, so a crash in between hands the
event again. Exactly once for a subscriber's own writes to the store's database: a
`transactional` handler gets the cursor of the transaction that moves the position. A handler
that keeps failing is retried with exponential backoff for `retry.give_up_after` seconds, then
the subscriber is parked at that event (the position does not move past it) until
`replay`. One owner per subscriber: a PostgreSQL advisory lock, or a lock on a file beside a
SQLite store (both released by the system when the owner dies).
"""

from __future__ import annotations

import fcntl
import threading
import traceback
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import structlog

from dealengine.domain.errors import DealEngineError
from dealengine.store.application import Store
from dealengine.subscriptions.notices import Notice, Notices, wanted
from dealengine.subscriptions.tables import Moved, Position, SubscriptionTables
from dealengine.views.worker import Owner

log = structlog.get_logger("dealengine.subscriptions")

Handler = Callable[..., None]  # handler(notice) or, transactional, handler(notice, cursor)
BATCH = 500


@dataclass(frozen=True, slots=True)
class Retry:
    """Exponential backoff: `first` seconds, doubling up to `longest`, for `give_up_after`
    seconds in all; then the subscriber is parked."""

    first: float = 0.5
    longest: float = 60.0
    give_up_after: float = 600.0

    def delays(self) -> Iterator[float]:
        delay, spent = self.first, 0.0
        while spent + delay <= self.give_up_after:
            yield delay
            spent += delay
            delay = min(delay * 2, self.longest)


@dataclass(frozen=True, slots=True)
class Subscriber:
    name: str
    handler: Handler
    types: frozenset[str] | None = None
    transactional: bool = False
    from_start: bool = True
    retry: Retry = field(default_factory=Retry)


class Lock(Protocol):
    def try_take(self, name: str) -> bool: ...

    def release(self, name: str) -> None: ...

    def close(self) -> None: ...


class FileLock:
    """One owner per subscriber of a SQLite store: `flock` on `<store>.subscriber.<name>.lock`."""

    def __init__(self, store_file: str | None) -> None:
        self.store_file = store_file
        self.held: dict[str, IO[bytes]] = {}
        self.local: set[str] = set()

    def try_take(self, name: str) -> bool:
        if name in self.held or name in self.local:
            return True
        if self.store_file is None:  # an in-memory store: this process is the only one
            self.local.add(name)
            return True
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        f = Path(f"{self.store_file}.subscriber.{safe}.lock").open("ab")  # noqa: SIM115
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self.held[name] = f
        return True

    def release(self, name: str) -> None:
        self.local.discard(name)
        f = self.held.pop(name, None)
        if f is not None:
            f.close()

    def close(self) -> None:
        for name in list(self.held):
            self.release(name)


class AdvisoryLock:
    """One owner per subscriber on PostgreSQL: the view workers' advisory locks."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner

    def try_take(self, name: str) -> bool:
        return self.owner.try_take(f"subscriber:{name}")

    def release(self, name: str) -> None:
        self.owner.release(f"subscriber:{name}")

    def close(self) -> None:
        self.owner.close()


class Subscriptions:
    """The subscribers of one store and their positions."""

    def __init__(
        self,
        store: Store,
        tables: SubscriptionTables,
        notices: Callable[[], Notices],
        open_lock: Callable[[], Lock],
        poll: float = 0.2,
    ) -> None:
        self.store = store
        self.tables = tables
        self.new_notices = notices
        self.open_lock = open_lock
        self.poll = poll
        self.subscribers: dict[str, Subscriber] = {}
        self._threads: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._created = False

    def ensure_tables(self) -> None:
        if not self._created:
            self.tables.create()
            self._created = True

    def add(self, subscriber: Subscriber) -> Position:
        """Register a subscriber (its position starts at 0, or at the store's head)."""
        self.ensure_tables()
        if subscriber.name in self.subscribers:
            raise DealEngineError(f"subscriber {subscriber.name!r} is already registered")
        self.subscribers[subscriber.name] = subscriber
        start = 0 if subscriber.from_start else self.store.position()
        return self.tables.register(subscriber.name, start)

    def subscribe(
        self,
        name: str,
        handler: Handler,
        *,
        types: Collection[str] | None = None,
        from_start: bool = True,
        transactional: bool = False,
        retry: Retry | None = None,
        run: bool = True,
    ) -> Position:
        """Register a durable subscriber and (with `run`) start it in a thread of this
        process; its position is kept in the store, so it resumes where it stopped."""
        subscriber = Subscriber(
            name,
            handler,
            None if types is None else frozenset(types),
            transactional,
            from_start,
            retry or Retry(),
        )
        position = self.add(subscriber)
        if run:
            self.start(name)
        return position

    def start(self, name: str) -> None:
        """Run subscriber `name` in a thread of this process until `close`."""
        stopping = threading.Event()
        thread = threading.Thread(
            target=self.run, args=([name], stopping), name=f"subscriber:{name}", daemon=True
        )
        self._threads[name] = (thread, stopping)
        thread.start()

    def run(self, names: Sequence[str], stopping: threading.Event) -> None:
        """Keep subscribers `names` caught up until `stopping` is set, for each one it owns."""
        lock = self.open_lock()
        runs = {name: Run(self, self.subscribers[name], stopping) for name in names}
        try:
            while not stopping.is_set():
                busy = False
                for name, run in runs.items():
                    if lock.try_take(name):
                        try:
                            busy = run.step() or busy
                        except Exception as e:  # the store failing: log, wait, go on
                            log.error("subscriber.error", subscriber=name, error=str(e))
                            stopping.wait(self.poll * 5)
                if not busy:
                    stopping.wait(self.poll)
        finally:
            lock.close()

    def catch_up(self, name: str) -> int:
        """Handle every notice recorded so far for subscriber `name`, here and now (tests, a
        one-shot run); the position reached."""
        run = Run(self, self.subscribers[name], threading.Event())
        while run.step():
            pass
        position = self.tables.get(name)
        return position.position if position else 0

    def status(self) -> list[tuple[Position, int]]:
        """Each subscriber's position and the store's head."""
        self.ensure_tables()
        head = self.store.position()
        return [(p, head) for p in self.tables.all()]

    def replay(self, name: str, from_position: int | None) -> Position:
        """Rewind `name` so it handles events after `from_position` again (default: from its
        parked event), and unpark it."""
        self.ensure_tables()
        current = self.tables.get(name)
        if current is None:
            raise DealEngineError(f"no subscriber {name!r}")
        if from_position is None:
            if current.parked_position is None:
                raise DealEngineError(f"subscriber {name!r} is not parked: say --from N")
            from_position = current.parked_position
        if from_position < 1:
            raise DealEngineError(f"--from must be 1 or more, got {from_position}")
        self.tables.rewind(name, from_position - 1)
        position = self.tables.get(name)
        assert position is not None
        log.info("subscriber.replay", subscriber=name, position=position.position)
        return position

    def close(self) -> None:
        for _thread, stopping in self._threads.values():
            stopping.set()
        for thread, _ in self._threads.values():
            thread.join(timeout=30)
        self._threads.clear()


class Run:
    """One subscriber's loop state: its notices' derivation and the batch in hand."""

    def __init__(self, subs: Subscriptions, subscriber: Subscriber, stopping: threading.Event):
        self.subs = subs
        self.subscriber = subscriber
        self.stopping = stopping
        self.notices = subs.new_notices()

    def step(self) -> bool:
        """Handle the next batch; whether there was anything to do."""
        tables, name = self.subs.tables, self.subscriber.name
        position = tables.get(name)
        if position is None or position.parked:
            return False
        rows = self.subs.store.recorder.select_notifications(
            position.position, BATCH, inclusive_of_start=False
        )
        if not rows:
            return False
        written = at = position.position  # in the table; handled (events no notice wanted)
        for notification in rows:
            if self.stopping.is_set():
                break
            notices = [n for n in self.notices.of(notification) if wanted(n, self.subscriber.types)]
            if not notices:
                at = notification.id
                continue
            try:
                written = at = self._handle(written, at, notification.id, notices)
            except Moved:
                return True  # replayed meanwhile: start again from the new position
            except Parked:
                return False
        if at != written:
            try:
                with tables.advancing(name, written, at):
                    pass
            except Moved:
                pass
        return True

    def _handle(self, at: int, handled: int, position: int, notices: list[Notice]) -> int:
        """Hand `notices` (of the event at `position`) over and move from `at` to `position`
        (`handled`: the last event before it, none of whose notices were wanted)."""
        subscriber, tables = self.subscriber, self.subs.tables
        delays = iter(subscriber.retry.delays())
        attempt = 0
        while True:
            attempt += 1
            try:
                if subscriber.transactional:
                    with tables.advancing(subscriber.name, at, position) as cursor:
                        for notice in notices:
                            subscriber.handler(notice, cursor)
                else:
                    for notice in notices:
                        subscriber.handler(notice)
                    with tables.advancing(subscriber.name, at, position):
                        pass
                return position
            except Moved:
                raise
            except Exception as e:
                delay = next(delays, None)
                error = f"{type(e).__name__}: {e}"
                if delay is None or self.stopping.is_set():
                    if delay is None:
                        tables.park(subscriber.name, at, handled, position, notices[0].id, error)
                        log.error(
                            "subscriber.parked", subscriber=subscriber.name, position=position,
                            notice=notices[0].id, error=error, attempts=attempt,
                        )  # fmt: skip
                    raise Parked from e
                log.warning(
                    "subscriber.retry", subscriber=subscriber.name, position=position,
                    attempt=attempt, delay=delay, error=error,
                    trace=traceback.format_exc(limit=3) if attempt == 1 else None,
                )  # fmt: skip
                if self.stopping.wait(delay):
                    raise Parked from e  # stopping: not parked, picked up again on start


class Parked(Exception):
    """The subscriber stopped at an event (parked, or stopping mid-retry)."""
