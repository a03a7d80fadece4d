"""Recorder subclasses (the library's extension point) that stream the notification log.

`stream(gt)` yields `(notification_id, originator_id, topic, state)` rows straight from one
database cursor inside one read transaction, so a rebuild sees one consistent snapshot and
builds no Notification object per row.

For audits: `by_stream()` yields every stored event in stream order (originator id in code point
order, then version) through a streaming cursor, for verification in constant memory; a
partial index holds only the `event_voided` rows, so `voided_ids()` is one small indexed read.
The seal log (`dealengine seal`, dealengine.audit.verify) is a table of its own beside the
events: `dealengine_seals` (number, sealed_at, seal, prev, digest), appended to, never updated.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from dealengine.domain.chain import topic_of
from dealengine.domain.events import VOID_EVENTS

Row = tuple[int, str, str, bytes]
Partition = tuple[int, int]  # (i, n): partition i of n
StreamRow = tuple[str, int, str, bytes, int]  # originator_id, version, topic, state, position
VOID_TOPICS = tuple(topic_of(cls) for cls in VOID_EVENTS)
_VOID_TOPICS_SQL = "(" + ", ".join(f"'{t}'" for t in VOID_TOPICS) + ")"  # literals: the index's


def _voided(states: Iterator[bytes]) -> set[str]:
    return {str(orjson.loads(state)["voided_event_id"]) for state in states}


FETCH = 5000
CHUNK = 500  # ids per query when reading many streams at once
SEALS = "dealengine_seals"
SealRow = tuple[int, str, str, str, str]  # number, sealed_at, seal, prev, digest


class SQLiteStreamingRecorder(SQLiteApplicationRecorder):
    def construct_create_table_statements(self) -> list[str]:
        table = self.events_table_name
        return [
            *super().construct_create_table_statements(),
            f"CREATE INDEX IF NOT EXISTS {table}_voids ON {table} (topic) "
            f"WHERE topic IN {_VOID_TOPICS_SQL}",
            f"CREATE TABLE IF NOT EXISTS {SEALS} (number INTEGER PRIMARY KEY, "
            "sealed_at TEXT NOT NULL, seal TEXT NOT NULL, prev TEXT NOT NULL, "
            "digest TEXT NOT NULL)",
        ]

    def append_seal(self, entry: SealRow) -> None:
        """Add an entry to the seal log (its number taken: an IntegrityError)."""
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"INSERT INTO {SEALS} VALUES (?, ?, ?, ?, ?)", entry)

    def seal_log(self) -> list[SealRow]:
        """The seal log in number order ([] when there is none yet)."""
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(f"SELECT name FROM sqlite_master WHERE name = '{SEALS}'")
            if cursor.fetchone() is None:  # a store opened read-only before the log existed
                return []
            cursor.execute(f"SELECT * FROM {SEALS} ORDER BY number")
            return [tuple(row) for row in cursor.fetchall()]

    def voided_ids(self, stop: int | None = None) -> set[str]:
        """The ids of the voided events (up to position `stop`): one read of the voids' index."""
        sql = f"SELECT state FROM {self.events_table_name} WHERE topic IN {_VOID_TOPICS_SQL}"
        params: list[int] = []
        if stop is not None:
            sql += " AND rowid <= ?"
            params.append(stop)
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(sql, params)
            return _voided(state for (state,) in cursor.fetchall())

    def count(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(f"SELECT COUNT(*) FROM {self.events_table_name}")
            return int(cursor.fetchone()[0])

    def by_stream(self) -> Iterator[StreamRow]:
        """Every stored event by stream (id in code point order: SQLite's binary collation),
        then version, from one cursor in one read transaction."""
        sql = (
            "SELECT originator_id, originator_version, topic, state, rowid "
            f"FROM {self.events_table_name} ORDER BY originator_id, originator_version"
        )
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(sql)
            while rows := cursor.fetchmany(FETCH):
                yield from rows

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

    def stream(
        self, gt: int = 0, stop: int | None = None, part: Partition | None = None
    ) -> Iterator[Row]:
        """The log after `gt` (up to `stop`); with `part=(i, n)`, every deal's events and the
        events of the leads in partition i of n (`projections.funnel.in_partition`)."""
        table = self.events_table_name
        sql = f"SELECT rowid, originator_id, topic, state FROM {table} WHERE rowid > ?"
        params: list[int] = [gt]
        if stop is not None:
            sql += " AND rowid <= ?"
            params.append(stop)
        if part is not None:
            sql += (
                " AND (substr(originator_id, 1, 5) = 'deal:'"
                " OR unicode(substr(originator_id, -1)) % ? = ?)"
            )
            params += [part[1], part[0]]
        sql += " ORDER BY rowid"
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(FETCH):
                yield from rows


class PostgresStreamingRecorder(PostgresApplicationRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sql_create_statements.append(
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (notification_id) WHERE topic IN ({})").format(
                Identifier(f"{self.events_table_name}_voids_idx"),
                self._table(),
                SQL(", ").join(Literal(t) for t in VOID_TOPICS),
            )
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (number bigint PRIMARY KEY, sealed_at text NOT NULL,"
                " seal text NOT NULL, prev text NOT NULL, digest text NOT NULL)"
            ).format(self._seals())
        )

        # The insert of a batch: four plain arrays, unnested in order (see _insert_stored_events).
        self.insert_arrays_statement = SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state)"
            " SELECT * FROM unnest(%b::{}[], %b::bigint[], %b::text[], %b::bytea[])"
            " RETURNING notification_id"
        ).format(self._table(), Identifier(self.datastore.originator_id_type))

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **_: Any
    ) -> None:
        """The parent's insert (table lock, NOTIFY for the followers, one INSERT ... RETURNING
        notification_id), with the events sent as four arrays of plain types.

        The parent sends one array of a composite type, which psycopg dumps in pure Python
        (about half the time of a batched ingest); arrays of text, bigint and bytea are dumped
        by psycopg's C code. unnest() of several arrays yields their rows in order, so the
        notification ids come back in the order of `stored_events`, as before.
        """
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self.insert_arrays_statement,
            (
                [s.originator_id for s in stored_events],
                [s.originator_version for s in stored_events],
                [s.topic for s in stored_events],
                [s.state for s in stored_events],
            ),
            prepare=True,
        )

    def _table(self) -> Composed:
        return SQL("{}.{}").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )

    def _seals(self) -> Composed:
        return SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(SEALS))

    def append_seal(self, entry: SealRow) -> None:
        """Add an entry to the seal log (its number taken: an IntegrityError)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s)").format(self._seals()), entry
            )

    def seal_log(self) -> list[SealRow]:
        """The seal log in number order ([] when there is none yet)."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute("SELECT to_regclass(%s)", (f'"{self.datastore.schema}".{SEALS}',))
            found = cur.fetchone()
            if found is None or found[0] is None:
                return []
            cur.execute(SQL("SELECT * FROM {} ORDER BY number").format(self._seals()))
            return [(int(n), str(t), str(s), str(p), str(d)) for n, t, s, p, d in cur.fetchall()]

    def voided_ids(self, stop: int | None = None) -> set[str]:
        """The ids of the voided events (up to position `stop`): one read of the voids' index."""
        topics = SQL(", ").join(Literal(t) for t in VOID_TOPICS)
        sql = SQL("SELECT state FROM {} WHERE topic IN ({})").format(self._table(), topics)
        params: list[int] = []
        if stop is not None:
            sql += SQL(" AND notification_id <= %s")
            params.append(stop)
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(sql, params)
            return _voided(bytes(state) for (state,) in cur)

    def count(self) -> int:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(SQL("SELECT COUNT(*) FROM {}").format(self._table()))
            row = cur.fetchone()
            return int(row[0]) if row else 0

    def by_stream(self) -> Iterator[StreamRow]:
        """Every stored event by stream (id in code point order: COLLATE "C", which sorts
        unless the database's own collation is already C), then version, through a
        server-side cursor in one read-only transaction."""
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(force_rollback=True),
            conn.cursor(name="dealengine_by_stream", row_factory=tuple_row) as cursor,
        ):
            collation = conn.cursor(row_factory=tuple_row).execute("SHOW lc_collate").fetchone()
            plain = collation is not None and collation[0] in ("C", "POSIX")
            order = SQL("originator_id") if plain else SQL('originator_id COLLATE "C"')
            cursor.itersize = FETCH
            cursor.execute(
                SQL(
                    "SELECT originator_id, originator_version, topic, state, notification_id "
                    "FROM {} ORDER BY {}, originator_version"
                ).format(self._table(), order)
            )
            for oid, version, topic, state, position in cursor:
                yield oid, version, topic, bytes(state), position

    def select_streams(self, ids: Sequence[str]) -> list[StoredEvent]:
        """The events of many streams in one read (by stream, then version). Never prepared:
        psycopg prepares a query run 5 times, and PostgreSQL's generic plan for `= ANY($1)`
        (an array of unknown size) scans the whole table: 50-60 s a batch at 6.7M events,
        against 0.1 s planned with the ids (the 10M run, benchmarks/RESULTS.md)."""
        sql = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {}"
            " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(self._table())
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cursor:
            cursor.execute(sql, (list(ids),), prepare=False)
            return [StoredEvent(oid, v, topic, bytes(state)) for oid, v, topic, state in cursor]

    def stream(
        self, gt: int = 0, stop: int | None = None, part: Partition | None = None
    ) -> Iterator[Row]:
        """As the SQLite recorder's `stream` (PostgreSQL's ascii() is the code point)."""
        sql = SQL(
            "SELECT notification_id, originator_id, topic, state FROM {} WHERE notification_id > %s"
        ).format(self._table())
        params: list[int] = [gt]
        if stop is not None:
            sql += SQL(" AND notification_id <= %s")
            params.append(stop)
        if part is not None:
            sql += SQL(  # %% is the modulo operator
                " AND (left(originator_id, 5) = 'deal:'"
                " OR ascii(right(originator_id, 1)) %% %s = %s)"
            )
            params += [part[1], part[0]]
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
