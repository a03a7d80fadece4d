"""Projection workers: one owner per view partition (a PostgreSQL advisory lock), following
the store with LISTEN/NOTIFY until stopped, finishing the batch in hand.

Each worker holds a numbered worker slot (another advisory lock) while it runs, so the live
workers can be counted; each takes at most its share of a view's partitions (the partitions
over the workers, rounded up) and lets go of the rest, so that a new worker finds partitions
free and the partitions of a dead one (its locks end with its connection) are taken over at
the others' next poll."""

from __future__ import annotations

import hashlib
import math
import select
import threading
from collections.abc import Sequence
from urllib.parse import urlparse, urlunparse

import psycopg

from dealengine.domain.errors import DealEngineError
from dealengine.logs import get_logger
from dealengine.store.errors import translated
from dealengine.views.materialised import MaterialisedView

log = get_logger("dealengine.views")


WORKER_SLOTS = 256
SLOTS = range(WORKER_SLOTS)


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

    def alive(self) -> bool:
        """Whether the connection still answers (a server restart or an idle timeout ends it)."""
        try:
            self.conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def close(self) -> None:
        self.conn.close()

    def register(self) -> None:
        """Take the first free worker slot: what `workers()` counts."""
        for slot in range(WORKER_SLOTS):
            if self.try_take(f"worker/{slot}"):
                return
        raise DealEngineError(f"more than {WORKER_SLOTS} projection workers on this schema")

    def workers(self) -> int:
        """The workers running on this schema now (their slots held)."""
        keys = [lock_key(self.schema, f"worker/{slot}") & 0xFFFFFFFFFFFFFFFF for slot in SLOTS]
        with translated("counting the projection workers"):
            row = self.conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND objsubid = 1 AND (classid::bigint, objid::bigint) IN "
                "(SELECT * FROM unnest(%s::bigint[], %s::bigint[]))",
                ([k >> 32 for k in keys], [k & 0xFFFFFFFF for k in keys]),
            ).fetchone()
        return max(1, int(row[0]) if row else 1)


def follow(
    views: Sequence[MaterialisedView],
    owner: Owner,
    channel: str,
    stopping: threading.Event,
    poll: float = 1.0,
) -> None:
    """Keep this worker's share of each view's partitions caught up: wake on NOTIFY from the
    store, or every `poll` seconds (when another worker may have come or gone)."""
    listener = owner.conn
    listener.execute(f'LISTEN "{channel}"')
    owner.register()
    while not stopping.is_set():
        workers = owner.workers()
        for view in views:
            mine = share_of(view, owner, math.ceil(view.partitions / workers))
            if mine and not stopping.is_set():
                view.catch_up(stop=stopping.is_set, partitions=mine)
        if stopping.is_set():
            break
        readable, _, _ = select.select([listener.fileno()], [], [], poll)
        if readable:
            for _ in listener.notifies(timeout=0):
                pass
    for view in views:
        for i in range(view.partitions):
            owner.release(view.owner_key(i))


def share_of(view: MaterialisedView, owner: Owner, share: int) -> list[int]:
    """The partitions of `view` this worker keeps: those it owns, up to `share` (letting go of
    the others), then free ones until it has its share."""
    keys = [view.owner_key(i) for i in range(view.partitions)]
    mine = [i for i, key in enumerate(keys) if key in owner.owned]
    for i in mine[share:]:
        owner.release(keys[i])
    mine = mine[:share]
    for i, key in enumerate(keys):
        if len(mine) >= share:
            break
        if i not in mine and owner.try_take(key):
            mine.append(i)
    return sorted(mine)
