"""Projection workers: one owner per projection (a PostgreSQL advisory lock), following the
store with LISTEN/NOTIFY until stopped, finishing the batch in hand."""

from __future__ import annotations

import hashlib
import select
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from urllib.parse import urlparse, urlunparse

import psycopg

from dealengine.logs import get_logger
from dealengine.store.errors import translated
from dealengine.views.materialised import MaterialisedView

log = get_logger("dealengine.views")


def lock_key(schema: str, projection: str) -> int:
    digest = hashlib.sha256(f"dealengine.view.{schema}.{projection}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Owner:
    """Holds (or tries to take) the advisory lock of each projection on one connection; the
    database releases them when the connection dies, so another worker takes over."""

    def __init__(self, database_url: str, schema: str) -> None:
        parts = urlparse(database_url)
        with translated("connecting for the views' owner locks"):
            self.conn = psycopg.connect(urlunparse(parts._replace(query="")), autocommit=True)
        self.schema = schema
        self.owned: set[str] = set()

    def try_take(self, projection: str) -> bool:
        if projection not in self.owned:
            with translated(f"taking the {projection} view's owner lock"):
                row = self.conn.execute(
                    "SELECT pg_try_advisory_lock(%s)", (lock_key(self.schema, projection),)
                ).fetchone()
            if row and row[0]:
                self.owned.add(projection)
                log.info("view.owner", projection=projection)
        return projection in self.owned

    def release(self, projection: str) -> None:
        if projection in self.owned:
            with translated(f"releasing the {projection} view's owner lock"):
                self.conn.execute(
                    "SELECT pg_advisory_unlock(%s)", (lock_key(self.schema, projection),)
                )
            self.owned.discard(projection)

    def close(self) -> None:
        self.conn.close()


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM (the work in hand finishes first)."""
    stopping = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("worker.stopping", signal=signal.Signals(signum).name)
        stopping.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopping
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def follow(
    views: Sequence[MaterialisedView],
    owner: Owner,
    channel: str,
    stopping: threading.Event,
    poll: float = 1.0,
) -> None:
    """Keep the owned views caught up: wake on NOTIFY from the store, or every `poll` seconds
    (when another worker's lock may have been released)."""
    listener = owner.conn
    listener.execute(f'LISTEN "{channel}"')
    while not stopping.is_set():
        for view in views:
            if owner.try_take(view.name):
                view.catch_up(stop=stopping.is_set)
        if stopping.is_set():
            break
        readable, _, _ = select.select([listener.fileno()], [], [], poll)
        if readable:
            for _ in listener.notifies(timeout=0):
                pass
    for view in views:
        owner.release(view.name)
