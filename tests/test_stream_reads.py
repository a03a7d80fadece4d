"""Reading many streams at once on PostgreSQL is never a prepared statement: its generic plan
scans the whole events table (found by the 10M run, issue 21 item 4)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from dealengine import Engine, Settings
from dealengine.demo import generate
from dealengine.domain.lines import interaction_from


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
