"""Where materialised views live: eventsourcing tracking recorders with two tables of ours.

Each view generation (`funnel#3`) has its counters and a tracking row (the library's, under
the generation's name) written in ONE transaction, and only from the position the totals were
made from: an event is applied exactly once. `dealengine_views` points each projection at its
active generation; switching it is one UPDATE, so a query (one SELECT joining the pointer)
sees the old view or the new one, never a mix. SQL is written once: `?` placeholders become
`%s` on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder

from dealengine.store.errors import translated

Counter = tuple[int, str | None, str | None]  # n, amount, weighted (decimal strings)
Row = tuple[str, int, str | None, str | None]  # counter key, n, amount, weighted
CHUNK = 500
VIEWS = "DealEngineViews"  # the views' eventsourcing environment
TRACKING_TABLE = VIEWS.lower() + "_tracking"  # as eventsourcing's factory names it
BUILDING = ":building"  # `funnel:building` names the generation being built as the first view

TABLES = (
    "CREATE TABLE IF NOT EXISTS {p}dealengine_views (projection TEXT PRIMARY KEY, "
    "active TEXT NOT NULL, digest TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {p}dealengine_view_counters (view TEXT NOT NULL, "
    "key TEXT NOT NULL, n BIGINT NOT NULL, amount TEXT, weighted TEXT, PRIMARY KEY (view, key))",
    # the states views kept before they were read from the store's streams
    "DROP TABLE IF EXISTS {p}dealengine_view_entities",
)


class ViewTables:
    """The view tables' reads and writes, for both the SQLite and the PostgreSQL recorder;
    database errors come out as StoreError (a position already tracked: VersionConflict)."""

    marker = "?"
    owns_datastore = True  # closed with the views

    def _prefix(self) -> str:
        return ""

    @contextmanager
    def _tx(self, *, commit: bool) -> Iterator[Any]:
        with (
            translated("writing the views" if commit else "reading the views"),
            self._transaction(commit=commit) as c,
        ):
            yield c

    def _transaction(self, *, commit: bool) -> Any:
        return self.datastore.transaction(commit=commit)  # type: ignore[attr-defined]

    def position(self, view: str) -> int:
        """The last event `view` has applied (0: none yet)."""
        with translated(f"reading the position of view {view}"):
            return self.max_tracking_id(view) or 0  # type: ignore[attr-defined]

    def _sql(self, statement: str) -> str:
        statement = statement.replace("{p}", self._prefix())
        return statement.replace("?", self.marker) if self.marker != "?" else statement

    def create_view_tables(self) -> None:
        with self._tx(commit=True) as c:
            for statement in TABLES:
                c.execute(self._sql(statement))

    def active(self, projection: str) -> tuple[str, str] | None:
        """(generation, definition digest) of the projection's active view, if any."""
        with self._tx(commit=False) as c:
            c.execute(
                self._sql("SELECT active, digest FROM {p}dealengine_views WHERE projection = ?"),
                (projection,),
            )
            row = c.fetchone()
        return (row["active"], row["digest"]) if row else None

    def _rows_of(
        self, view: str, keys: Iterable[str], columns: str, table: str, key: str
    ) -> list[Any]:
        """The rows of `view` whose `key` is one of `keys` (read in chunks of ids)."""
        keys = list(keys)
        rows: list[Any] = []
        with self._tx(commit=False) as c:
            for i in range(0, len(keys), CHUNK):
                chunk = keys[i : i + CHUNK]
                marks = ",".join("?" * len(chunk))
                c.execute(
                    self._sql(
                        f"SELECT {columns} FROM {{p}}{table} WHERE view = ? AND {key} IN ({marks})"
                    ),
                    (view, *chunk),
                )
                rows.extend(c.fetchall())
        return rows

    def counters(self, projection: str) -> tuple[str | None, list[Row]]:
        """The active generation of `projection` and all its counters (those of each of its
        partitions, `<generation>/<i>`, when split), in one read."""
        with self._tx(commit=False) as c:
            c.execute(
                self._sql(
                    "SELECT v.active AS view, c.key AS key, c.n AS n, c.amount AS amount, "
                    "c.weighted AS weighted FROM {p}dealengine_views v LEFT JOIN "
                    "{p}dealengine_view_counters c ON c.view = v.active "
                    "OR c.view LIKE v.active || ? WHERE v.projection = ?"
                ),
                ("/%", projection),
            )
            rows = c.fetchall()
        if not rows:
            return None, []
        return rows[0]["view"], [
            (r["key"], r["n"], r["amount"], r["weighted"]) for r in rows if r["key"] is not None
        ]

    def write(
        self, view: str, counters: Mapping[str, Counter], tracking: Tracking, *, after: int
    ) -> None:
        """Counter totals and the position they are as of, in one transaction, if the view
        is still at position `after` (the totals were made from it); else VersionConflict."""
        with self._tx(commit=True) as c:  # SQLite: BEGIN IMMEDIATE, its write lock first
            c.executemany(
                self._sql(
                    "INSERT INTO {p}dealengine_view_counters (view, key, n, amount, weighted) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (view, key) DO UPDATE SET n = excluded.n, "
                    "amount = excluded.amount, weighted = excluded.weighted"
                ),
                [(view, k, *v) for k, v in counters.items()],
            )
            found = self._max_tracking_id(view, c) or 0  # type: ignore[attr-defined]
            if found != after:
                raise IntegrityError(f"view {view} is at position {found}, not {after}")
            self._insert_tracking(c, tracking)  # type: ignore[attr-defined]

    def counter_rows(self, view: str, keys: Iterable[str]) -> dict[str, Counter]:
        rows = self._rows_of(
            view, keys, "key, n, amount, weighted", "dealengine_view_counters", "key"
        )
        return {r["key"]: (r["n"], r["amount"], r["weighted"]) for r in rows}

    def activate(self, projection: str, view: str, digest: str) -> str | None:
        """Point `projection` at `view` and drop the generation it replaces, atomically."""
        with self._tx(commit=True) as c:
            c.execute(
                self._sql("SELECT active FROM {p}dealengine_views WHERE projection = ?"),
                (projection,),
            )
            row = c.fetchone()
            old = row["active"] if row else None
            c.execute(
                self._sql(
                    "INSERT INTO {p}dealengine_views (projection, active, digest) VALUES (?, ?, ?) "
                    "ON CONFLICT (projection) DO UPDATE SET active = excluded.active, "
                    "digest = excluded.digest"
                ),
                (projection, view, digest),
            )
            if old and old != view:
                self._drop(c, old)
            c.execute(
                self._sql("DELETE FROM {p}dealengine_views WHERE projection = ?"),
                (projection + BUILDING,),
            )
        return old

    def building(self, projection: str, generation: str, target: int) -> tuple[str, int]:
        """The generation being built as the projection's first view and the position it is
        built up to: `generation` and `target`, unless a build was begun before (then its)."""
        with self._tx(commit=True) as c:
            c.execute(
                self._sql(
                    "INSERT INTO {p}dealengine_views (projection, active, digest) VALUES (?, ?, ?) "
                    "ON CONFLICT (projection) DO NOTHING"
                ),
                (projection + BUILDING, generation, str(target)),
            )
            c.execute(
                self._sql("SELECT active, digest FROM {p}dealengine_views WHERE projection = ?"),
                (projection + BUILDING,),
            )
            row = c.fetchone()
        return row["active"], int(row["digest"])

    def forget_building(self, projection: str) -> None:
        with self._tx(commit=True) as c:
            c.execute(
                self._sql("DELETE FROM {p}dealengine_views WHERE projection = ?"),
                (projection + BUILDING,),
            )

    def drop(self, view: str) -> None:
        with self._tx(commit=True) as c:
            self._drop(c, view)

    def _drop(self, c: Any, view: str) -> None:
        """A generation's rows, and its partitions' (`<generation>/<i>`)."""
        c.execute(
            self._sql("DELETE FROM {p}dealengine_view_counters WHERE view = ? OR view LIKE ?"),
            (view, view + "/%"),
        )

    def generations(self, projection: str) -> Iterator[str]:
        """Views of `projection` that have rows (the active one and any unfinished rebuild)."""
        with self._tx(commit=False) as c:
            c.execute(
                self._sql(
                    "SELECT DISTINCT view FROM {p}dealengine_view_counters WHERE view LIKE ?"
                ),
                (f"{projection}#%",),
            )
            rows = c.fetchall()
        return (r["view"] for r in rows)


class SQLiteViewRecorder(ViewTables, SQLiteTrackingRecorder):
    @contextmanager
    def _transaction(self, *, commit: bool) -> Iterator[Any]:
        """A write takes SQLite's write lock first (BEGIN IMMEDIATE), waiting up to the busy
        timeout. eventsourcing's plain BEGIN would read first (activate() does), and a read
        transaction that then writes after another connection's commit fails at once with
        "database is locked" whatever the timeout."""
        if not commit:
            with self.datastore.transaction(commit=False) as c:
                yield c
            return
        with self.datastore.get_connection(commit=True) as conn:
            cursor = conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def create_table(self) -> None:
        super().create_table()
        self.create_view_tables()


class PostgresViewRecorder(ViewTables, PostgresTrackingRecorder):
    marker = "%s"
    owns_datastore = False  # the store's: Engine.close closes it

    def _prefix(self) -> str:
        return f'"{self.datastore.schema}".'

    def create_table(self) -> None:
        super().create_table()
        self.create_view_tables()
