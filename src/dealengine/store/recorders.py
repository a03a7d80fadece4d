"""Recorder subclasses (the library's extension point) that stream the notification log.

`stream(gt)` yields `(notification_id, originator_id, topic, state)` rows straight from one
database cursor inside one read transaction, so a rebuild sees one consistent snapshot and
builds no Notification object per row.

For audits: `by_stream()` yields every stored event in stream order (originator id in code point
order, then version) through a streaming cursor, for verification in constant memory; a
partial index holds only the `event_voided` rows, so `voided_ids()` is one small indexed read.
The seal log (`dealengine seal`, dealengine.audit.verify) is a table of its own beside the
events: `dealengine_seals` (number, sealed_at, seal, prev, digest), appended to, never updated.

The model each write was decided under (dealengine.domain.model): `dealengine_models` holds
each model once (digest, its canonical content, first_used_at) and `dealengine_model_changes`
one row (position, digest) wherever the model changes: the event at that position and every
later one up to the next row were written under it. Both are written in the events' own
transaction, under their write lock, so the rows are exact however many processes write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg import Connection, Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from dealengine.domain.chain import topic_of
from dealengine.domain.errors import StoreError
from dealengine.domain.events import TIME_FORMAT, VOID_EVENTS
from dealengine.domain.streams import DEAL_PREFIX, RATES_PREFIX

Row = tuple[int, str, str, bytes]
Partition = tuple[int, int]  # (i, n): partition i of n
StreamRow = tuple[str, int, str, bytes, int]  # originator_id, version, topic, state, position
VOID_TOPICS = tuple(topic_of(cls) for cls in VOID_EVENTS)
_VOID_TOPICS_SQL = "(" + ", ".join(f"'{t}'" for t in VOID_TOPICS) + ")"  # literals: the index's


# The rates' streams (`rates:EUR-USD`, dealengine.domain.rates): a range of the primary key's
# index in any collation (a prefix is a range in every one), then the exact prefix.
_RATES_KIND = RATES_PREFIX[:-1]  # `rates`; the range ends before the next string, `ratet`
RATES_RANGE = (
    f"originator_id >= '{_RATES_KIND}' AND originator_id < '{_RATES_KIND[:-1]}"
    f"{chr(ord(_RATES_KIND[-1]) + 1)}' AND substr(originator_id, 1, {len(RATES_PREFIX)})"
    f" = '{RATES_PREFIX}'"
)


def _voided(states: Iterator[bytes]) -> set[str]:
    return {str(orjson.loads(state)["voided_event_id"]) for state in states}


FETCH = 5000
MAPPED = 1 << 30  # bytes of a SQLite store memory-mapped while it is read by stream
CHUNK = 500  # ids per query when reading many streams at once
SEALS = "dealengine_seals"
SealRow = tuple[int, str, str, str, str]  # number, sealed_at, seal, prev, digest
MODELS, MODEL_CHANGES = "dealengine_models", "dealengine_model_changes"
ModelChange = tuple[int, str, str]  # position, digest, first_used_at
Model = tuple[str, bytes]  # digest, canonical content


def _now() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT)


class ModelRecording:
    """What both recorders keep of the model record: the model this process writes under (set
    by the bootstrap), and where its last committed write ended. A batch that starts right
    there follows a write already recorded under the same model, with no other write between:
    it needs no check (a gap, a rollback or another model: it is checked)."""

    model: Model | None = None
    _follows: tuple[int, str] | None = None  # (the next position, the digest) after our write

    def _model_to_record(self, position: int) -> Model | None:
        model = self.model
        if model is None or self._follows == (position, model[0]):
            return None
        return model

    def _committed(self, ids: Sequence[int] | None) -> None:
        model = self.model
        self._follows = (ids[-1] + 1, model[0]) if ids and model is not None else None


class SQLiteStreamingRecorder(ModelRecording, SQLiteApplicationRecorder):
    _file: tuple[int, int] | None = None  # the store file's (device, inode), once opened

    def create_table(self) -> None:
        """The tables, made when the store is opened for writing (its file made too if new);
        then which file it is."""
        super().create_table()
        self._file = _file_identity(self.datastore.pool.db_name)

    def _refuse_another_file(self) -> None:
        """Refuse a write once the store's file was deleted or replaced since it was opened (a
        dropped tenant, a restore): its rows would go to a file nobody reads again."""
        path = self.datastore.pool.db_name
        if self._file is not None and _file_identity(path) != self._file:
            raise StoreError(
                f"writing to {path}",
                "the store's file was deleted or replaced since it was opened: open it again",
            )

    def construct_create_table_statements(self) -> list[str]:
        table = self.events_table_name
        return [
            *super().construct_create_table_statements(),
            f"CREATE INDEX IF NOT EXISTS {table}_voids ON {table} (topic) "
            f"WHERE topic IN {_VOID_TOPICS_SQL}",
            f"CREATE TABLE IF NOT EXISTS {SEALS} (number INTEGER PRIMARY KEY, "
            "sealed_at TEXT NOT NULL, seal TEXT NOT NULL, prev TEXT NOT NULL, "
            "digest TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {MODELS} (digest TEXT PRIMARY KEY, "
            "content TEXT NOT NULL, first_used_at TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {MODEL_CHANGES} (position INTEGER PRIMARY KEY, "
            "digest TEXT NOT NULL)",
        ]

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        self._refuse_another_file()
        ids = super().insert_events(stored_events, **kwargs)
        self._committed(ids)
        return ids

    def _record_model(self, c: SQLiteCursor, position: int) -> None:
        """In the write's transaction: a row from `position` on when the model changes."""
        model = self._model_to_record(position)
        if model is None:
            return
        digest, content = model
        c.execute(f"SELECT digest FROM {MODEL_CHANGES} ORDER BY position DESC LIMIT 1")
        last = c.fetchone()
        if last is not None and last[0] == digest:
            return
        c.execute(f"INSERT INTO {MODEL_CHANGES} VALUES (?, ?)", (position, digest))
        c.execute(
            f"INSERT INTO {MODELS} VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING",
            (digest, content.decode(), _now()),
        )

    def model_changes(self) -> list[ModelChange]:
        """Where the model changed, in position order ([]: a store written before models were
        recorded, or opened read-only before the table existed)."""
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(f"SELECT name FROM sqlite_master WHERE name = '{MODEL_CHANGES}'")
            if cursor.fetchone() is None:
                return []
            cursor.execute(
                f"SELECT position, c.digest, first_used_at FROM {MODEL_CHANGES} c "
                f"JOIN {MODELS} m ON m.digest = c.digest ORDER BY position"
            )
            return [tuple(row) for row in cursor.fetchall()]

    def positions(self, stream: str) -> list[int]:
        """The positions of one stream's events, in version order."""
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(
                f"SELECT rowid FROM {self.events_table_name} WHERE originator_id = ? "
                "ORDER BY originator_version",
                (stream,),
            )
            return [int(position) for (position,) in cursor.fetchall()]

    def model_content(self, digest: str) -> bytes | None:
        """The canonical content of a recorded model (None: not recorded)."""
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(f"SELECT name FROM sqlite_master WHERE name = '{MODELS}'")
            if cursor.fetchone() is None:
                return None
            cursor.execute(f"SELECT content FROM {MODELS} WHERE digest = ?", (digest,))
            row = cursor.fetchone()
            return str(row[0]).encode() if row else None

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
        return _voided(state for (state,) in self._up_to(sql, stop))

    def rate_rows(self, stop: int | None = None) -> list[Row]:
        """The exchange rates' events (streams `rates:...`), up to position `stop`, in recorded
        order: a range of the stream ids' index (RATES_RANGE)."""
        sql = (
            f"SELECT rowid, originator_id, topic, state FROM {self.events_table_name}"
            f" WHERE {RATES_RANGE}"
        )
        return [tuple(row) for row in self._up_to(sql, stop, " ORDER BY rowid")]

    def _up_to(self, sql: str, stop: int | None, order: str = "") -> list[Any]:
        """The rows of `sql` (a SELECT ... WHERE) up to position `stop`, if given."""
        params: list[int] = []
        if stop is not None:
            sql += " AND rowid <= ?"
            params.append(stop)
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(sql + order, params)
            return list(cursor.fetchall())

    def count(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(f"SELECT COUNT(*) FROM {self.events_table_name}")
            return int(cursor.fetchone()[0])

    def by_stream(self) -> Iterator[StreamRow]:
        """Every stored event by stream (id in code point order: SQLite's binary collation),
        then version, from one cursor in one read transaction.

        The stream order is the primary key's, so each row is a lookup in the table, in no
        order: the file is memory-mapped for the read (a page is then read without a system
        call; a quarter less time), and unmapped after it."""
        sql = (
            "SELECT originator_id, originator_version, topic, state, rowid "
            f"FROM {self.events_table_name} ORDER BY originator_id, originator_version"
        )
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(f"PRAGMA mmap_size = {MAPPED}")
            try:
                cursor.execute(sql)
                while rows := cursor.fetchmany(FETCH):
                    yield from rows
            finally:
                cursor.execute("PRAGMA mmap_size = 0")

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
        first = last - len(stored_events) + 1
        self._record_model(c, first)
        return list(range(first, last + 1))

    def select_streams(self, ids: Sequence[str]) -> list[StoredEvent]:
        """The events of many streams in one read (by stream, then version)."""
        rows = self._by_streams(
            "SELECT originator_id, originator_version, topic, state FROM {table} "
            "WHERE originator_id IN ({marks}) ORDER BY originator_id, originator_version",
            ids,
        )
        return [StoredEvent(*row) for row in rows]

    def stream_rows(self, ids: Sequence[str], stop: int) -> list[Row]:
        """The events of streams `ids` up to position `stop`, in recorded order."""
        found: list[Row] = self._by_streams(
            "SELECT rowid, originator_id, topic, state FROM {table} "
            "WHERE originator_id IN ({marks}) AND rowid <= ?",
            ids,
            stop,
        )
        found.sort()  # by position: positions are unique
        return found

    def _by_streams(self, sql: str, ids: Sequence[str], *params: Any) -> list[Any]:
        """The rows of `sql` (its `{marks}` the ids, then `params`) for each CHUNK of `ids`,
        in one read transaction."""
        found: list[Any] = []
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            for i in range(0, len(ids), CHUNK):
                chunk = ids[i : i + CHUNK]
                marks = ",".join("?" * len(chunk))
                query = sql.format(table=self.events_table_name, marks=marks)
                cursor.execute(query, (*chunk, *params))
                found.extend(cursor.fetchall())
        return found

    def stream(
        self,
        gt: int = 0,
        stop: int | None = None,
        part: Partition | None = None,
        *,
        deals: bool = False,
    ) -> Iterator[Row]:
        """The log after `gt` (up to `stop`); with `part=(i, n)`, every deal's events and the
        events of the leads in partition i of n (`projections.funnel.in_partition`); with
        `deals`, the deals' events only (those of partition i, with `part`)."""
        table = self.events_table_name
        sql = f"SELECT rowid, originator_id, topic, state FROM {table} WHERE rowid > ?"
        params: list[int | str] = [gt]
        if stop is not None:
            sql += " AND rowid <= ?"
            params.append(stop)
        where, more = _selected(deals, part, *SQLITE_TESTS)
        sql += where
        params += more
        sql += " ORDER BY rowid"
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(FETCH):
                yield from rows


def notify_channel(schema: str, table: str) -> str:
    """The NOTIFY channel of the events table `table` in `schema`: one per schema, so a worker
    of one tenant is not woken by another's writes (the `public` schema keeps the table's name,
    as before). A channel name is at most 63 bytes: a longer one is a digest of the schema."""
    if schema == "public":
        return table
    channel = f"{schema}_{table}"
    if len(channel.encode()) <= 63:
        return channel
    return f"{table}_{hashlib.sha256(schema.encode()).hexdigest()[:24]}"


class PostgresStreamingRecorder(ModelRecording, PostgresApplicationRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.channel_name = notify_channel(self.datastore.schema, self.events_table_name)
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
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (digest text PRIMARY KEY, content text NOT NULL,"
                " first_used_at text NOT NULL)"
            ).format(self._own(MODELS))
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, digest text NOT NULL)"
            ).format(self._own(MODEL_CHANGES))
        )

        # The insert of a batch: COPY in binary (see insert_events).
        self.copy_statement = SQL(
            "COPY {} (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)"
        ).format(self._table())
        self.copy_types = [self.datastore.originator_id_type, "int8", "text", "bytea"]
        self.last_position_statement = SQL(
            "SELECT currval(pg_get_serial_sequence({}, 'notification_id'))"
        ).format(Literal(f'"{self.datastore.schema}"."{self.events_table_name}"'))

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The parent's insert in one transaction (its table lock, NOTIFY for the followers),
        the events sent by COPY in binary: a third less time than one INSERT of them all,
        whose parameters the server has to parse; a taken (stream, version) fails the whole
        COPY as it failed the INSERT (an IntegrityError), storing nothing.

        COPY returns no notification ids: they are the sequence's last `len(stored_events)`
        values, consecutive and in the order of `stored_events`, since the table lock keeps
        every other insert out of the sequence until this transaction ends.
        """
        if not stored_events:
            return []
        if self.datastore.enable_db_functions:  # not the store's setting: the parent's way
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            self._committed(ids)
            return ids
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._lock_table(curs)
            self._notify_channel(curs)
            with curs.copy(self.copy_statement) as copy:
                copy.set_types(self.copy_types)
                write = copy.write_row
                for s in stored_events:
                    write((s.originator_id, s.originator_version, s.topic, s.state))
            found = curs.execute(self.last_position_statement, prepare=True).fetchone()
            assert found is not None
            last = int(found["currval"])
            ids = list(range(last - len(stored_events) + 1, last + 1))
            self._record_model(curs, ids)
        self._committed(ids)
        return ids

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The parent's (the batch's notification ids), then the model's record in the same
        transaction (the parent's insert, with the database functions)."""
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        self._record_model(curs, ids)
        return ids

    def _record_model(self, curs: Cursor[DictRow], ids: Sequence[int] | None) -> None:
        """In the write's transaction (the events table is locked): a row from the first of
        `ids` on when the model changes."""
        model = self._model_to_record(ids[0]) if ids else None
        if model is not None and ids:
            digest, content = model
            curs.execute(
                SQL(
                    "WITH changed AS (INSERT INTO {0} SELECT %s, %s WHERE %s IS DISTINCT FROM"
                    " (SELECT digest FROM {0} ORDER BY position DESC LIMIT 1) RETURNING digest)"
                    " INSERT INTO {1} SELECT %s, %s, %s WHERE EXISTS (SELECT FROM changed)"
                    " ON CONFLICT (digest) DO NOTHING"
                ).format(self._own(MODEL_CHANGES), self._own(MODELS)),
                (ids[0], digest, digest, digest, content.decode(), _now()),
            )

    def model_changes(self) -> list[ModelChange]:
        """As the SQLite recorder's `model_changes`."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute("SELECT to_regclass(%s)", (f'"{self.datastore.schema}".{MODEL_CHANGES}',))
            found = cur.fetchone()
            if found is None or found[0] is None:
                return []
            cur.execute(
                SQL(
                    "SELECT position, c.digest, first_used_at FROM {} c JOIN {} m"
                    " ON m.digest = c.digest ORDER BY position"
                ).format(self._own(MODEL_CHANGES), self._own(MODELS))
            )
            return [(int(p), str(d), str(t)) for p, d, t in cur.fetchall()]

    def positions(self, stream: str) -> list[int]:
        """As the SQLite recorder's `positions`."""
        sql = SQL(
            "SELECT notification_id FROM {} WHERE originator_id = %s ORDER BY originator_version"
        ).format(self._table())
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(sql, (stream,))
            return [int(position) for (position,) in cur.fetchall()]

    def model_content(self, digest: str) -> bytes | None:
        """As the SQLite recorder's `model_content`."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute("SELECT to_regclass(%s)", (f'"{self.datastore.schema}".{MODELS}',))
            found = cur.fetchone()
            if found is None or found[0] is None:
                return None
            cur.execute(
                SQL("SELECT content FROM {} WHERE digest = %s").format(self._own(MODELS)),
                (digest,),
            )
            row = cur.fetchone()
            return str(row[0]).encode() if row else None

    def _own(self, table: str) -> Composed:
        return SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(table))

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

    def rate_rows(self, stop: int | None = None) -> list[Row]:
        """As the SQLite recorder's `rate_rows`."""
        sql = SQL("SELECT notification_id, originator_id, topic, state FROM {} WHERE ").format(
            self._table()
        ) + SQL(RATES_RANGE)  # fmt: skip
        params: list[int] = []
        if stop is not None:
            sql += SQL(" AND notification_id <= %s")
            params.append(stop)
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(sql + SQL(" ORDER BY notification_id"), params)
            return [(nid, oid, topic, bytes(state)) for nid, oid, topic, state in cur]

    def count(self) -> int:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(SQL("SELECT COUNT(*) FROM {}").format(self._table()))
            row = cur.fetchone()
            return int(row[0]) if row else 0

    def by_stream(self) -> Iterator[StreamRow]:
        """Every stored event by stream (id in code point order: COLLATE "C", which sorts
        unless the database's own collation is already C), then version, through a
        server-side cursor in one read-only transaction. The rows come in binary (the state
        as its bytes, not hex: half the bytes to send and to decode), a page at a time."""
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(force_rollback=True),
            conn.cursor(name="dealengine_by_stream", row_factory=tuple_row, binary=True) as cursor,
        ):
            plain = self.sorts_as_c(conn)
            order = SQL("originator_id") if plain else SQL('originator_id COLLATE "C"')
            cursor.execute(
                SQL(
                    "SELECT originator_id, originator_version, topic, state, notification_id "
                    "FROM {} ORDER BY {}, originator_version"
                ).format(self._table(), order)
            )
            while rows := cursor.fetchmany(FETCH):
                yield from rows

    @staticmethod
    def sorts_as_c(conn: Connection[Any]) -> bool:
        """Does the database's default collation order text by code point: libc's C or
        POSIX? Read from pg_database (PostgreSQL 16 removed the `lc_collate` setting), with
        its locale provider (from 15: an ICU default collation keeps a libc `datcollate` it
        does not sort by; read through to_jsonb, which gives null on a server without it)."""
        with conn.cursor(row_factory=tuple_row) as cursor:
            found = cursor.execute(
                "SELECT datcollate, to_jsonb(d) ->> 'datlocprovider' FROM pg_database d"
                " WHERE datname = current_database()"
            ).fetchone()
        return found is not None and found[0] in ("C", "POSIX") and found[1] in (None, "c")

    def select_streams(self, ids: Sequence[str]) -> list[StoredEvent]:
        """The events of many streams in one read (by stream, then version)."""
        sql = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {}"
            " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(self._table())
        rows = self._by_streams(sql, (list(ids),))
        return [StoredEvent(oid, v, topic, bytes(state)) for oid, v, topic, state in rows]

    def _by_streams(self, sql: Composed, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows of a read by stream ids, through the primary key's index whatever the
        planner would guess. Never prepared: psycopg prepares a query run 5 times, and the
        generic plan for `= ANY($1)` (an array of unknown size) scans the whole table (50-60
        s a batch at 6.7M events, against 0.1 s planned with the ids). Nor a scan of the
        table where it was never analyzed (autovacuum off): with no statistics the planner
        takes each id to match 0.5% of the rows (the 10M runs, benchmarks/RESULTS.md)."""
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=tuple_row) as cursor,
        ):
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(sql, params, prepare=False)
            return cursor.fetchall()

    def stream_rows(self, ids: Sequence[str], stop: int) -> list[Row]:
        """As the SQLite recorder's `stream_rows` (see `_by_streams`); `stop` is applied
        here, as a bound in SQL would draw the planner to the notification id's index."""
        sql = SQL(
            "SELECT notification_id, originator_id, topic, state FROM {}"
            " WHERE originator_id = ANY(%s)"
        ).format(self._table())
        rows = self._by_streams(sql, (list(ids),))
        return sorted(
            (nid, oid, topic, bytes(state)) for nid, oid, topic, state in rows if nid <= stop
        )

    def stream(
        self,
        gt: int = 0,
        stop: int | None = None,
        part: Partition | None = None,
        *,
        deals: bool = False,
    ) -> Iterator[Row]:
        """As the SQLite recorder's `stream` (PostgreSQL's ascii() is the code point)."""
        sql = SQL(
            "SELECT notification_id, originator_id, topic, state FROM {} WHERE notification_id > %s"
        ).format(self._table())
        params: list[int | str] = [gt]
        if stop is not None:
            sql += SQL(" AND notification_id <= %s")
            params.append(stop)
        where, more = _selected(deals, part, *POSTGRES_TESTS)
        sql += SQL(where)
        params += more
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


def _file_identity(db_name: str) -> tuple[int, int] | None:
    """The (device, inode) of a store's file; None for an in-memory or read-only store (a
    `file:` URI), or a file that is not there."""
    if db_name.startswith("file:"):
        return None
    try:
        found = Path(db_name).stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino


# a stream id's tests in each dialect: a deal's prefix, and its partition (the last character's
# code modulo n: PostgreSQL's ascii() is the code point; %% is its modulo operator)
SQLITE_TESTS = ("substr(originator_id, 1, ?) = ?", "unicode(substr(originator_id, -1)) % ? = ?")
POSTGRES_TESTS = ("left(originator_id, %s) = %s", "ascii(right(originator_id, 1)) %% %s = %s")


def _selected(
    deals: bool, part: Partition | None, a_deal: str, in_part: str
) -> tuple[str, list[int | str]]:
    """The end of `stream`'s WHERE clause and its parameters: with `deals`, the deals' events
    only (of partition i of n, with `part=(i, n)`); else with `part`, every deal's events and
    those of the leads in partition i (`projections.funnel.in_partition`). `a_deal` and
    `in_part` are the dialect's tests of a stream id: a deal's prefix, and the partition."""
    prefix: list[int | str] = [len(DEAL_PREFIX), DEAL_PREFIX]
    in_part_params: list[int | str] = [] if part is None else [part[1], part[0]]
    if deals:
        return (f" AND {a_deal}" + (f" AND {in_part}" if part else ""), prefix + in_part_params)
    if part is not None:
        return f" AND ({a_deal} OR {in_part})", prefix + in_part_params
    return "", []
