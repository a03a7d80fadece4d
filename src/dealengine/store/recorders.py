"""Recorder subclasses (the library's extension point) that stream the notification log.

`stream(gt)` yields `(notification_id, originator_id, topic, state)` rows straight from one
database cursor inside one read transaction, so a rebuild sees one consistent snapshot and
builds no Notification object per row.
"""

from __future__ import annotations

from collections.abc import Iterator

from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

Row = tuple[int, str, str, bytes]
FETCH = 5000


class SQLiteStreamingRecorder(SQLiteApplicationRecorder):
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
