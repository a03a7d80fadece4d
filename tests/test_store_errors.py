"""The database's errors reach a host as dealengine's own, naming what was being done, never as
eventsourcing's, sqlite3's or psycopg's; and on SQLite a reader never waits for a writer."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from dealengine import Engine, Settings, StoreError, VersionConflict

from .conftest import PG_URL


def open_deal(engine: Engine) -> None:
    engine.record("ad_viewed", "L-1", "2026-03-01T10:00:00Z", channel="web", campaign="c")
    engine.record("lead_qualified", "L-1", "2026-03-02T10:00:00Z", by="sdr")
    engine.record(
        "deal_opened", "D-1", "2026-03-03T10:00:00Z", lead_id="L-1", amount="10", owner="o"
    )


def drop_events_table(settings: Settings, engine: Engine) -> None:
    table = engine.store.recorder.events_table_name
    if settings.database_url is None:
        with sqlite3.connect(settings.db) as conn:
            conn.execute(f"DROP TABLE {table}")
        return
    schema = settings.database_url.rsplit("schema=", 1)[1]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {schema}.{table}")


def test_a_failing_database_raises_store_errors_naming_the_operation(
    settings: Settings, engine: Engine
) -> None:
    open_deal(engine)
    drop_events_table(settings, engine)  # every statement on the events now fails
    with pytest.raises(
        StoreError, match=r"^reading deal:D-1: .*(no such table|does not exist)"
    ) as read:
        engine.deal("D-1")
    with pytest.raises(StoreError, match=r"^appending 1 events to deal:D-1: ") as write:
        engine.record("proposal_sent", "D-1", "2026-03-04T10:00:00Z")  # decided on the cached deal
    with pytest.raises(StoreError, match=r"^reading the event log"):
        engine.views()
    for raised in (read.value, write.value):
        assert not isinstance(raised, VersionConflict)
        assert raised.__cause__ is not None  # the library's error, kept for a traceback


def test_a_locked_sqlite_store_fails_writes_after_the_timeout_and_never_readers(
    tmp_path: Path,
) -> None:
    settings = Settings(db=str(tmp_path / "store.db"), database_url=None, lock_timeout=1)
    with Engine(settings) as engine:
        open_deal(engine)
        engine.live_funnel()
        other = sqlite3.connect(settings.db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's write transaction, left open
        try:
            began = time.monotonic()
            with pytest.raises(
                StoreError, match=r"^appending 1 events to deal:D-1: database is locked"
            ):
                engine.record("proposal_sent", "D-1", "2026-03-04T10:00:00Z")
            assert 0.9 < time.monotonic() - began < 10  # waited for the lock, as configured
            assert engine.deal("D-1").stage == "prospecting"  # readers go on (WAL)
            assert [e.event_type for e in engine.history("D-1")] == ["deal_opened"]
            assert engine.views()[1].stages[0].open_deals == 1
            assert engine.live_funnel()[0].leads == 1
        finally:
            other.execute("ROLLBACK")
            other.close()
        engine.record("proposal_sent", "D-1", "2026-03-04T10:00:00Z")
        assert engine.deal("D-1").stage == "proposal"


def visit(engine: Engine, lead: str) -> int:
    return len(engine.record("site_visited", lead, "2026-03-01T10:00:00Z", channel="web").events)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_store_file_deleted_or_replaced_under_an_open_engine_refuses_writes(
    tmp_path: Path, how: str
) -> None:
    """Given an engine writing to a SQLite file, when the file is deleted (a tenant dropped
    by another process) or replaced by another store (a restore), then the engine's next write
    is refused naming the file, instead of going into the unlinked file nobody reads again; a
    new engine writes to the file now at that path."""
    path = tmp_path / "s.db"
    settings = Settings(db=str(path), database_url=None)
    other = Settings(db=str(tmp_path / "other.db"), database_url=None)
    with Engine(settings) as engine:
        assert visit(engine, "L-1") == 1
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        if how == "replaced":
            with Engine(other) as restored:
                visit(restored, "L-9")
            (tmp_path / "other.db").rename(path)
        with pytest.raises(StoreError) as refused:
            visit(engine, "L-2")
    assert str(path) in str(refused.value)
    assert "the store's file was deleted or replaced since it was opened" in str(refused.value)
    with Engine(settings) as engine:
        assert visit(engine, "L-3") == 1
        expected = {"L-3"} if how == "deleted" else {"L-9", "L-3"}
        assert {row[0].removeprefix("lead:") for row in engine.store.by_stream()} == expected
