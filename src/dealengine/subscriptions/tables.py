"""Where subscriptions keep their state: tables in the store's own database (the SQLite file,
or the store's PostgreSQL schema), written through the store's datastore, so a subscriber
that writes to the same database does it in the transaction that moves its position.

`dealengine_subscriptions`: one row per subscriber: the position (the last notification id it
has handled), and the parked event when its handler kept failing. `dealengine_deliveries`: the
webhooks' delivery log, one row per attempt. SQL is written once: `?` becomes `%s` on
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dealengine.store.own_tables import OwnTables

TABLES = (
    "CREATE TABLE IF NOT EXISTS {p}dealengine_subscriptions (name TEXT PRIMARY KEY, "
    "position BIGINT NOT NULL, parked_position BIGINT, parked_notice TEXT, parked_error TEXT, "
    "updated_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {p}dealengine_deliveries (subscriber TEXT NOT NULL, "
    "notice_id TEXT NOT NULL, position BIGINT NOT NULL, attempt INTEGER NOT NULL, "
    "url TEXT NOT NULL, status INTEGER, error TEXT, at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS dealengine_deliveries_notice "
    "ON {p}dealengine_deliveries (subscriber, notice_id)",
    "CREATE TABLE IF NOT EXISTS {p}dealengine_webhooks (name TEXT PRIMARY KEY, "
    "definition TEXT NOT NULL, created_at TEXT NOT NULL)",
)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a subscriber is: the last notification id it handled, and what parks it."""

    name: str
    position: int
    parked_position: int | None = None
    parked_notice: str | None = None
    parked_error: str | None = None
    updated_at: str | None = None

    @property
    def parked(self) -> bool:
        return self.parked_position is not None


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SubscriptionTables(OwnTables):
    """The subscriptions' reads and writes on the store's datastore (store/own_tables.py)."""

    statements = TABLES

    def get(self, name: str) -> Position | None:
        with self.transaction(commit=False) as c:
            return self._get(c, name)

    def _get(self, c: Any, name: str) -> Position | None:
        c.execute(
            self.sql(
                "SELECT name, position, parked_position, parked_notice, parked_error, "
                "updated_at FROM {p}dealengine_subscriptions WHERE name = ?"
            ),
            (name,),
        )
        row = c.fetchone()
        return _position(row) if row else None

    def all(self) -> list[Position]:
        with self.transaction(commit=False) as c:
            c.execute(
                self.sql(
                    "SELECT name, position, parked_position, parked_notice, parked_error, "
                    "updated_at FROM {p}dealengine_subscriptions ORDER BY name"
                )
            )
            return [_position(row) for row in c.fetchall()]

    def register(self, name: str, start: int) -> Position:
        """The subscriber's position, starting at `start` when it is new."""
        with self.transaction(commit=True) as c:
            c.execute(
                self.sql(
                    "INSERT INTO {p}dealengine_subscriptions (name, position, updated_at) "
                    "VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING"
                ),
                (name, start, now_text()),
            )
            found = self._get(c, name)
        assert found is not None
        return found

    @contextmanager
    def advancing(self, name: str, expected: int, position: int) -> Iterator[Any]:
        """A transaction that moves `name` from `expected` to `position` when it commits; the
        cursor is the subscriber's, for its own writes. Raises Moved if another owner (or a
        replay) moved the position meanwhile: the transaction is rolled back."""
        with self.transaction(commit=True) as c:
            # The position first: on SQLite this takes the write lock before the subscriber
            # reads anything, so its own writes cannot find the snapshot stale.
            c.execute(
                self.sql(
                    "UPDATE {p}dealengine_subscriptions SET position = ?, updated_at = ? "
                    "WHERE name = ? AND position = ? AND parked_position IS NULL"
                ),
                (position, now_text(), name, expected),
            )
            if _rowcount(c) != 1:
                raise Moved(name, expected)
            yield c

    def park(
        self, name: str, expected: int, handled: int, position: int, notice: str, error: str
    ) -> None:
        """Stop `name` at the event at `position` (its position: `handled`, the last one
        before it)."""
        with self.transaction(commit=True) as c:
            c.execute(
                self.sql(
                    "UPDATE {p}dealengine_subscriptions SET position = ?, parked_position = ?, "
                    "parked_notice = ?, parked_error = ?, updated_at = ? "
                    "WHERE name = ? AND position = ?"
                ),
                (handled, position, notice, error[:2000], now_text(), name, expected),
            )

    def rewind(self, name: str, position: int) -> bool:
        """Move `name` to `position` (events after it are handled again) and unpark it."""
        with self.transaction(commit=True) as c:
            c.execute(
                self.sql(
                    "UPDATE {p}dealengine_subscriptions SET position = ?, parked_position = NULL, "
                    "parked_notice = NULL, parked_error = NULL, updated_at = ? WHERE name = ?"
                ),
                (position, now_text(), name),
            )
            return _rowcount(c) == 1

    def log_delivery(
        self,
        c: Any,
        subscriber: str,
        notice_id: str,
        position: int,
        attempt: int,
        url: str,
        status: int | None,
        error: str | None,
    ) -> None:
        c.execute(
            self.sql(
                "INSERT INTO {p}dealengine_deliveries (subscriber, notice_id, position, attempt, "
                "url, status, error, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            (subscriber, notice_id, position, attempt, url, status, error, now_text()),
        )

    def deliveries(self, subscriber: str, limit: int = 100) -> list[dict[str, Any]]:
        with self.transaction(commit=False) as c:
            c.execute(
                self.sql(
                    "SELECT notice_id, position, attempt, url, status, error, at FROM "
                    "{p}dealengine_deliveries WHERE subscriber = ? ORDER BY position DESC, "
                    "attempt DESC LIMIT ?"
                ),
                (subscriber, limit),
            )
            return [dict(row) for row in c.fetchall()]

    def webhooks(self) -> list[str]:
        """The definitions (JSON) of the webhooks added through the API."""
        with self.transaction(commit=False) as c:
            c.execute(self.sql("SELECT definition FROM {p}dealengine_webhooks ORDER BY name"))
            return [row["definition"] for row in c.fetchall()]

    def add_webhook(self, name: str, definition: str) -> bool:
        """Keep a webhook's definition; False when one has that name."""
        with self.transaction(commit=True) as c:
            c.execute(
                self.sql(
                    "INSERT INTO {p}dealengine_webhooks (name, definition, created_at) "
                    "VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING"
                ),
                (name, definition, now_text()),
            )
            return _rowcount(c) == 1

    def remove_webhook(self, name: str) -> bool:
        with self.transaction(commit=True) as c:
            c.execute(self.sql("DELETE FROM {p}dealengine_webhooks WHERE name = ?"), (name,))
            return _rowcount(c) == 1


class Moved(Exception):
    """The position was moved by someone else (a replay, another owner) while handling."""

    def __init__(self, name: str, expected: int) -> None:
        super().__init__(f"subscriber {name} is no longer at {expected}")


def _position(row: Any) -> Position:
    return Position(
        row["name"],
        int(row["position"]),
        None if row["parked_position"] is None else int(row["parked_position"]),
        row["parked_notice"],
        row["parked_error"],
        row["updated_at"],
    )


def _rowcount(c: Any) -> int:
    """Rows the last statement changed (eventsourcing's SQLite cursor wraps sqlite3's)."""
    return int(getattr(c, "sqlite_cursor", c).rowcount)
