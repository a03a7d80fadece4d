"""Reading many streams at once on PostgreSQL is never a prepared statement: its generic plan
scans the whole events table (found by the 10M run, issue 21 item 4)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from dealengine import Engine, Settings
from dealengine.demo import generate
from dealengine.domain.lines import interaction_from

from .conftest import PG_URL


def test_reading_many_streams_is_planned_with_its_ids(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a store, when many streams are read ten times (psycopg prepares a query from its
    fifth run unless told not to), then every read asks not to be prepared."""
    with Engine(Settings(database_url=pg_schema_url)) as engine:
        lines = generate(30, 1)
        engine.execute_batch([interaction_from(line, "t", "t") for line in lines])
        reads: list[Any] = []
        real = psycopg.Cursor.execute

        def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            if "ANY" in str(getattr(query, "as_string", lambda c: query)(self)):
                reads.append(kwargs.get("prepare"))
            return real(self, query, params, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", execute)
        ids = sorted({f"lead:{line['lead_id']}" for line in lines if "lead_id" in line})
        for _ in range(10):
            assert len(engine.store.recorder.select_streams(ids)) >= len(ids)  # type: ignore[attr-defined]
    assert reads == [False] * 10


def test_reading_streams_of_a_table_never_analyzed_goes_by_its_index(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given 50,000 stored events and no statistics (autovacuum off, no ANALYZE: the planner
    then takes 200 ids to match every row), when the write path and the views read 200
    streams, then each read's plan (EXPLAINed in its own transaction) goes by the primary
    key's index, where the same query planned as it comes scans the table (the control)."""
    schema = pg_schema_url.rpartition("schema=")[2]
    table = f'"{schema}".dealengine_events'
    plans: list[str] = []
    real = psycopg.Cursor.execute

    def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = query.as_string(self) if hasattr(query, "as_string") else str(query)
        if "= ANY" in text:
            plans.append(" ".join(r[0] for r in real(self, "EXPLAIN " + text, params)))
        return real(self, query, params, **kwargs)

    with Engine(Settings(database_url=pg_schema_url)) as engine:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            conn.execute(
                f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
                "SELECT 'lead:L-' || g, 1, 't', '\\x7b7d' FROM generate_series(1, 50000) g"
            )
        ids = [f"lead:L-{n}" for n in range(1, 50_000, 250)]
        monkeypatch.setattr(psycopg.Cursor, "execute", execute)
        assert len(engine.store.recorder.select_streams(ids)) == len(ids)  # type: ignore[attr-defined]
        assert len(engine.store.stream_rows(ids, 50_000)) == len(ids)
        monkeypatch.undo()
    assert len(plans) == 2 and not [p for p in plans if "Seq Scan" in p], plans
    assert all("_pkey" in p and "notification_id" not in p for p in plans), plans
    with psycopg.connect(PG_URL) as conn:  # the control: the same read, planned as it comes
        [(plan,)] = conn.execute(
            f"EXPLAIN SELECT originator_id FROM {table} WHERE originator_id = ANY(%s)", (ids,)
        ).fetchall()[:1]
    assert "Seq Scan" in plan
