"""Leads' data keys in the store's own database (`dealengine_lead_keys`), the default LeadKeys.

One row per lead: the key's id, the lead, the secret (hex). Destroying a lead's keys deletes
its row so that nothing of the secret stays readable in the database's files: on SQLite every
write to this table runs with `PRAGMA secure_delete` (freed space and pages are zeroed) and a
destruction ends with a WAL checkpoint that truncates the WAL; on PostgreSQL it ends with
`VACUUM FULL` of this table (rewritten into a new file: the dead row's bytes go with the old
one). What the database's own logs and backups keep is the host's: see docs/privacy.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg

from dealengine.domain.errors import StoreError
from dealengine.domain.personal import LeadKey, new_lead_key
from dealengine.store.errors import CONFLICTS, translated
from dealengine.store.own_tables import OwnTables

TABLE = "dealengine_lead_keys"


class StoredLeadKeys(OwnTables):
    """The keys' table (store/own_tables.py). Thread-safe: each call is its own transaction."""

    wait = 30.0  # seconds a destruction waits for older PostgreSQL transactions to end

    statements = (
        f"CREATE TABLE IF NOT EXISTS {{p}}{TABLE} (key_id TEXT PRIMARY KEY, "
        "lead_id TEXT NOT NULL UNIQUE, secret TEXT NOT NULL, created_at TEXT NOT NULL)",
    )

    def ensure(self) -> None:
        """Create the table once; on PostgreSQL, two processes creating it at the same moment
        collide in the catalogue: the loser finds it made."""
        try:
            super().ensure()
        except (*CONFLICTS, psycopg.errors.InternalError_):
            super().ensure()

    @contextmanager
    def _tx(self, *, commit: bool) -> Iterator[Any]:
        self.ensure()
        with self.transaction(commit=commit) as c:
            if not self.postgres:
                c.execute("PRAGMA secure_delete = ON")  # this connection zeroes what it frees
            yield c

    def keys_for(self, lead_ids: Collection[str], *, create: bool = True) -> Mapping[str, LeadKey]:
        wanted = sorted(set(lead_ids))
        if not wanted:
            return {}
        with translated("reading the leads' keys"):
            found = self._select(wanted)
        missing = [lead for lead in wanted if lead not in found]
        if create and missing:
            now = datetime.now(UTC).isoformat()
            rows = [(k.id, lead, k.secret.hex(), now) for lead in missing for k in [new_lead_key()]]
            with translated("storing the leads' new keys"), self._tx(commit=True) as c:
                c.executemany(
                    self.sql(
                        f"INSERT INTO {{p}}{TABLE} (key_id, lead_id, secret, created_at) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (lead_id) DO NOTHING"
                    ),
                    rows,
                )
            with translated("reading the leads' keys"):
                found.update(self._select(missing))  # another writer's key, where it won
        return found

    def _select(self, lead_ids: list[str]) -> dict[str, LeadKey]:
        found: dict[str, LeadKey] = {}
        with self._tx(commit=False) as c:
            for chunk in _chunks(lead_ids):
                marks = ", ".join("?" for _ in chunk)
                c.execute(
                    self.sql(
                        f"SELECT key_id, lead_id, secret FROM {{p}}{TABLE} "
                        f"WHERE lead_id IN ({marks})"
                    ),
                    chunk,
                )
                for row in c.fetchall():
                    found[row["lead_id"]] = LeadKey(row["key_id"], bytes.fromhex(row["secret"]))
        return found

    def secrets(self, key_ids: Collection[str]) -> Mapping[str, bytes]:
        wanted = sorted(set(key_ids))
        found: dict[str, bytes] = {}
        if not wanted:
            return found
        with translated("reading the leads' keys"), self._tx(commit=False) as c:
            for chunk in _chunks(wanted):
                marks = ", ".join("?" for _ in chunk)
                c.execute(
                    self.sql(f"SELECT key_id, secret FROM {{p}}{TABLE} WHERE key_id IN ({marks})"),
                    chunk,
                )
                for row in c.fetchall():
                    found[row["key_id"]] = bytes.fromhex(row["secret"])
        return found

    def destroy(self, lead_id: str) -> int:
        with translated(f"destroying the keys of lead {lead_id}"):
            with self._tx(commit=True) as c:
                where = (self.sql(f"FROM {{p}}{TABLE} WHERE lead_id = ?"), (lead_id,))
                c.execute(f"SELECT COUNT(*) AS n {where[0]}", where[1])
                destroyed = int(c.fetchone()["n"])
                c.execute(f"DELETE {where[0]}", where[1])
            self._leave_nothing_behind()
        return destroyed

    def _leave_nothing_behind(self) -> None:
        """Rid the database's files of the deleted rows: SQLite's WAL checkpointed into the
        (zeroed) file and truncated; PostgreSQL's table rewritten without its dead rows."""
        if self.postgres:
            self._vacuum()
            return
        with self.datastore.get_connection(commit=True) as conn:
            cursor = conn.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            busy = cursor.fetchone()[0]
        if busy:
            raise StoreError(
                "checkpointing the WAL after destroying a lead's keys",
                "another process is reading the store, so the WAL still holds the deleted "
                "key: run the command again when it is done",
            )

    def _vacuum(self) -> None:
        """VACUUM FULL the table until no dead row is kept: PostgreSQL keeps a deleted row
        while a transaction begun before the delete may still see it (in any session of the
        database), so wait for those, up to the lock timeout."""
        kept: list[int] = []

        def count_kept(notice: Any) -> None:
            found = re.search(
                r"(\d+) dead row versions cannot be removed yet", notice.message_detail or ""
            )
            if found:
                kept.append(int(found.group(1)))

        deadline = time.monotonic() + self.wait
        with self.datastore.get_connection() as conn:  # autocommit: VACUUM needs no transaction
            conn.add_notice_handler(count_kept)
            conn.execute("SET lock_timeout = '1s'")  # a reader holding the table: wait, retry
            try:
                while True:
                    kept.clear()
                    try:
                        conn.execute(f"VACUUM (FULL, VERBOSE) {self.prefix}{TABLE}")
                    except psycopg.errors.LockNotAvailable:
                        kept.append(1)
                    if not any(kept):
                        return
                    if time.monotonic() > deadline:
                        raise StoreError(
                            "vacuuming the leads' keys after destroying one",
                            "a transaction older than the deletion still sees the deleted key: "
                            "run the command again when it has ended (pg_stat_activity)",
                        )
                    time.sleep(0.1)
            finally:
                conn.remove_notice_handler(count_kept)
                conn.execute("RESET lock_timeout")


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
