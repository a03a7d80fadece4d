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
import time
import traceback
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import structlog

from dealengine.domain.errors import DealEngineError
from dealengine.store.application import Store
from dealengine.subscriptions.notices import Notice, Notices, wanted
from dealengine.subscriptions.tables import Moved, Position, SubscriptionTables
from dealengine.views.worker import Owner

log = structlog.get_logger("dealengine.subscriptions")

Handler = Callable[..., object]
"""handler(notice), or for a `transactional` subscriber handler(notice, cursor). A plain
handler may return a callable: it is called with the cursor of the transaction that moves the
position (a record of the work done, written with the position)."""
BATCH = 500
GROUP = 100  # events whose records and position are written in one transaction


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
        self.refresh_every = 5.0  # seconds between looks at the webhooks' definitions
        self.subscribers: dict[str, Subscriber] = {}
        self.webhooks: Sequence[Any] = ()  # dealengine.subscriptions.webhooks.Webhook
        self._threads: dict[str, tuple[threading.Thread, threading.Event]] = {}

    def ensure_tables(self) -> None:
        self.tables.ensure()

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

    def run(
        self,
        names: Sequence[str],
        stopping: threading.Event,
        refresh: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        """Keep subscribers `names` caught up until `stopping` is set, for each one it owns;
        with `refresh`, the names are asked for again every `refresh_every` seconds (webhooks
        added or removed through the API)."""
        lock = self.open_lock()
        runs: dict[str, Run] = {}
        refreshed = -float("inf")
        try:
            while not stopping.is_set():
                if refresh is not None and time.monotonic() - refreshed > self.refresh_every:
                    names, refreshed = refresh(), time.monotonic()
                self._keep(runs, names, lock, stopping)
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

    def _keep(
        self, runs: dict[str, Run], names: Sequence[str], lock: Lock, stopping: threading.Event
    ) -> None:
        """Runs for exactly `names`, each for its subscriber as registered now."""
        for name in set(runs) - set(names):
            del runs[name]
            lock.release(name)
        for name in names:
            subscriber = self.subscribers[name]
            if name not in runs or runs[name].subscriber is not subscriber:
                runs[name] = Run(self, subscriber, stopping)

    def work(self, stopping: threading.Event, names: Sequence[str] = ()) -> None:
        """Run as a worker until `stopping`: the webhooks (of webhooks.toml and the API, looked
        at again every few seconds) and the subscribers `names` (already registered in this
        process), each where this process owns it."""
        from dealengine.subscriptions.webhooks import sync_webhooks

        unknown = [n for n in names if n not in self.subscribers]
        if unknown:
            raise DealEngineError(f"no subscriber {', '.join(unknown)} registered here")
        hooks = sync_webhooks(self)
        if not hooks and not names:
            raise DealEngineError(
                "nothing to run: no webhooks (webhooks.toml, POST /v1/webhooks), no subscriber"
            )
        log.info("subscribers.run", subscribers=[*hooks, *names])
        self.run([*hooks, *names], stopping, lambda: [*sync_webhooks(self), *names])

    def start_webhooks(self) -> None:
        """Deliver the webhooks from a thread of this process (until `close`), picking up the
        ones added or removed through the API."""
        from dealengine.subscriptions.webhooks import sync_webhooks

        stopping = threading.Event()
        thread = threading.Thread(
            target=self.run, args=([], stopping, lambda: sync_webhooks(self)),
            name="webhooks", daemon=True,
        )  # fmt: skip
        self._threads["webhooks"] = (thread, stopping)
        thread.start()

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
    """One subscriber's loop: its notices' derivation, and the events handled but not yet
    written (`group`), written together: a commit per event would bound a subscriber at a
    few hundred events a second on PostgreSQL.

    A transactional subscriber's group is handled in one transaction; when it fails, each of
    its events is handled again in a transaction of its own, with retries. A plain handler's
    events are handed over one by one (retrying each), their records and the position written
    together after up to GROUP events, or before waiting or parking: a crash in between hands
    them again (at least once).
    """

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
        self.written = self.at = position.position  # in the table; handled
        self.group: list[tuple[int, list[Notice]]] = []
        self.after: list[Callable[[Any], object]] = []
        try:
            for notification in rows:
                if self.stopping.is_set():
                    break
                notices = [
                    n for n in self.notices.of(notification) if wanted(n, self.subscriber.types)
                ]
                if notices:
                    self._take(notification.id, notices)
                self.at = notification.id
                if len(self.group) >= GROUP:
                    self._flush()
            self._flush()
        except Moved:
            return True  # replayed meanwhile: start again from the new position
        except Parked:
            return False
        return True

    def _take(self, position: int, notices: list[Notice]) -> None:
        if self.subscriber.transactional:
            self.group.append((position, notices))
            return
        done = self._with_retries(position, notices, self._hand_over)
        self.after.extend(w for w in done if callable(w))
        self.group.append((position, notices))

    def _hand_over(self, position: int, notices: list[Notice]) -> list[object]:
        return [self.subscriber.handler(notice) for notice in notices]

    def _flush(self) -> None:
        """Write the group's records and the position reached, in one transaction."""
        tables, name = self.subs.tables, self.subscriber.name
        if self.subscriber.transactional and self.group:
            group, self.group = self.group, []
            try:
                with tables.advancing(name, self.written, self.at) as cursor:
                    for _, notices in group:
                        for notice in notices:
                            self.subscriber.handler(notice, cursor)
            except (Moved, Parked):
                raise
            except Exception:  # one by one, with retries: a transaction each
                for position, notices in group:
                    self._with_retries(position, notices, self._in_transaction)
                    self.written = position
            else:
                self.written = self.at
                return
        if self.at == self.written:
            return
        after, self.after, self.group = self.after, [], []
        with tables.advancing(name, self.written, self.at) as cursor:
            for write in after:
                write(cursor)
        self.written = self.at

    def _in_transaction(self, position: int, notices: list[Notice]) -> list[object]:
        with self.subs.tables.advancing(self.subscriber.name, self.written, position) as c:
            for notice in notices:
                self.subscriber.handler(notice, c)
        return []

    def _with_retries(
        self, position: int, notices: list[Notice], attempt_once: Callable[..., list[object]]
    ) -> list[object]:
        """`attempt_once(position, notices)`, retried with backoff; parks when it gives up."""
        subscriber = self.subscriber
        delays = iter(subscriber.retry.delays())
        attempt = 0
        while True:
            attempt += 1
            try:
                return attempt_once(position, notices)
            except Moved:
                raise
            except Exception as e:
                delay = None if isinstance(e, GiveUp) else next(delays, None)
                error = f"{type(e).__name__}: {e}"
                if delay is None:
                    self._park(position, notices[0].id, error, attempt)
                    raise Parked from e
                log.warning(
                    "subscriber.retry", subscriber=subscriber.name, position=position,
                    attempt=attempt, delay=delay, error=error,
                    trace=traceback.format_exc(limit=3) if attempt == 1 else None,
                )  # fmt: skip
                if self.stopping.wait(delay):
                    raise Parked from e  # stopping: not parked, picked up again on start

    def _park(self, position: int, notice: str, error: str, attempts: int) -> None:
        """Park at the event at `position`, after writing what was handled before it."""
        name = self.subscriber.name
        if not self.subscriber.transactional:
            self._flush()
        self.subs.tables.park(name, self.written, self.written, position, notice, error)
        log.error(
            "subscriber.parked", subscriber=name, position=position, notice=notice,
            error=error, attempts=attempts,
        )  # fmt: skip


class GiveUp(Exception):
    """Raised by a handler for a failure a retry cannot mend: parked at once."""


class Parked(Exception):
    """The subscriber stopped at an event (parked, or stopping mid-retry)."""
