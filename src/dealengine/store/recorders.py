"""Recorder subclasses (the library's extension point) that stream the notification log.

`stream(gt)` yields `(notification_id, originator_id, topic, state)` rows straight from one
database cursor inside one read transaction, so a rebuild sees one consistent snapshot and
builds no Notification object per row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

Row = tuple[int, str, str, bytes]
FETCH = 5000
CHUNK = 500  # ids per query when reading many streams at once


class SQLiteStreamingRecorder(SQLiteApplicationRecorder):
    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **_: Any
    ) -> Sequence[int] | None:
        """One executemany instead of one execute per event (the parent's way to learn ids).

        The ids are still returned: inside the write transaction SQLite gives each new row
        the largest rowid so far plus one, so the batch's rowids are consecutive.
        """
        c.executemany(
            self.insert_events_statement,
            [(s.originator_id, s.originator_version, s.topic, s.state) for s in stored_events],
        )
        c.execute("SELECT last_insert_rowid()")
        last = int(c.fetchone()[0])
        return list(range(last - len(stored_events) + 1, last + 1))

    def select_streams(self, ids: Sequence[str]) -> list[StoredEvent]:
        """The events of many streams in one read (by stream, then version)."""
        found: list[StoredEvent] = []
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            for i in range(0, len(ids), CHUNK):
                chunk = ids[i : i + CHUNK]
                marks = ",".join("?" * len(chunk))
                cursor.execute(
                    "SELECT originator_id, originator_version, topic, state "
                    f"FROM {self.events_table_name} WHERE originator_id IN ({marks}) "
                    "ORDER BY originator_id, originator_version",
                    chunk,
                )
                found.extend(StoredEvent(*row) for row in cursor.fetchall())
        return found

    def stream(self, gt: int = 0, stop: int | None = None) -> Iterator[Row]:
        table = self.events_table_name
        sql = f"SELECT rowid, originator_id, topic, state FROM {table} WHERE rowid > ?"
        params: list[int] = [gt]
        if stop is not None:
            sql += " AND rowid <= ?"
            params.append(stop)
        sql += " ORDER BY rowid"
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(FETCH):
                yield from rows


class PostgresStreamingRecorder(PostgresApplicationRecorder):
    def select_streams(self, ids: Sequence[str]) -> list[StoredEvent]:
        """The events of many streams in one read (by stream, then version)."""
        sql = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {}.{}"
            " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cursor:
            cursor.execute(sql, (list(ids),))
            return [StoredEvent(oid, v, topic, bytes(state)) for oid, v, topic, state in cursor]

    def stream(self, gt: int = 0, stop: int | None = None) -> Iterator[Row]:
        sql = SQL(
            "SELECT notification_id, originator_id, topic, state FROM {}.{}"
            " WHERE notification_id > %s"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        params: list[int] = [gt]
        if stop is not None:
            sql += SQL(" AND notification_id <= %s")
            params.append(stop)
        sql += SQL(" ORDER BY notification_id")
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(force_rollback=True),
            conn.cursor(name="dealengine_stream", row_factory=tuple_row) as cursor,
        ):
            cursor.itersize = FETCH
            cursor.execute(sql, params)
            for nid, oid, topic, state in cursor:
                yield nid, oid, topic, bytes(state)
