"""Projection workers on PostgreSQL: one owner per projection at a time; another takes over
within seconds when the owner dies; a worker stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from dealengine import Engine, Settings
from dealengine.demo import generate
from dealengine.domain.lines import interaction_from
from dealengine.views.materialised import MaterialisedView
from dealengine.views.worker import lock_key

from .conftest import PG_URL
from .test_views import reference_funnel


def holders(schema: str, projection: str) -> list[int]:
    """The backend pids holding the projection's advisory lock."""
    key = lock_key(schema, projection) & 0xFFFFFFFFFFFFFFFF
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objid = %s",
            (key >> 32, key & 0xFFFFFFFF),
        ).fetchall()
    return [r[0] for r in rows]


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {check}")


def test_one_owner_per_projection_and_takeover(pg_schema_url: str) -> None:
    schema = pg_schema_url.rpartition("schema=")[2]
    settings = Settings(database_url=pg_schema_url)
    lines = generate(200, 3)
    with Engine(settings) as engine:
        engine.execute_batch([interaction_from(line, "t", "t") for line in lines[:300]])
    env = {**os.environ, "DEALENGINE_DATABASE_URL": pg_schema_url}
    worker = [sys.executable, "-m", "dealengine.cli", "project", "--follow"]
    first = subprocess.Popen(worker, env=env)
    try:
        owner = {p: wait_for(lambda p=p: holders(schema, p)) for p in ("funnel", "pipeline")}
        second = subprocess.Popen(worker, env=env)
        try:
            time.sleep(3)
            for projection in ("funnel", "pipeline"):
                assert holders(schema, projection) == owner[projection], "two owners at once"
            with Engine(settings) as engine:
                engine.execute_batch([interaction_from(line, "t", "t") for line in lines[300:450]])
                wait_for(lambda: engine.live_funnel(catch_up=False)[1].behind == 0)
            first.send_signal(signal.SIGKILL)
            first.wait()
            for projection in ("funnel", "pipeline"):
                taken = wait_for(
                    lambda p=projection: (h := holders(schema, p)) and h != owner[p] and h
                )
                assert len(taken) == 1
            with Engine(settings) as engine:
                engine.execute_batch([interaction_from(line, "t", "t") for line in lines[450:]])
                wait_for(lambda: engine.live_funnel(catch_up=False)[1].behind == 0)
                live, _ = engine.live_funnel(catch_up=False)
                assert [s.leads for s in live.steps] == [s.leads for s in engine.funnel().steps]
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=15) == 0
            assert holders(schema, "funnel") == []
        finally:
            if second.poll() is None:
                second.kill()
    finally:
        if first.poll() is None:
            first.kill()


def test_a_query_holds_a_view_for_its_catch_up_only_and_outlives_a_lost_connection(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given an engine on PostgreSQL whose queries catch the funnel view up: each catch-up
    holds the view's lock, through one connection kept for the next query, and no lock is
    left after it (a worker can take the view at once). When the server ends that
    connection, the next query opens another and catches up the new event."""
    schema = pg_schema_url.rpartition("schema=")[2]
    lines = generate(100, 3)
    seen: list[list[int]] = []  # who held the funnel's lock during each catch-up
    real = MaterialisedView.catch_up

    def watched(self: MaterialisedView, *args: Any, **kwargs: Any) -> int:
        seen.append(holders(schema, self.owner_key(0)))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MaterialisedView, "catch_up", watched)
    with Engine(Settings(database_url=pg_schema_url)) as engine:
        engine.execute_batch([interaction_from(line, "t", "t") for line in lines])
        engine.live_funnel()
        [pid] = seen[-1]
        assert holders(schema, "funnel") == []
        engine.live_funnel()
        assert seen[-1] == [pid]  # the same connection
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        engine.record("site_visited", "L-new", "2026-03-01T10:00:00Z", channel="web")
        funnel, lag = engine.live_funnel()
        assert len(seen[-1]) == 1 and seen[-1] != [pid] and holders(schema, "funnel") == []
        assert lag.behind == 0 and funnel.leads == reference_funnel(lines)[0][0] + 1


def test_on_postgresql_an_engines_views_use_the_stores_pool(pg_schema_url: str) -> None:
    """The views' tables are in the store's schema: the engine reaches them through the
    store's pool, not a second one of its own, and closes that pool once."""
    with Engine(Settings(database_url=pg_schema_url)) as engine:
        engine.live_funnel()
        assert engine.live.tables is not None
        assert engine.live.tables.datastore is engine.store.recorder.datastore


def test_follow_refuses_sqlite(tmp_path: Any) -> None:
    env = {**os.environ, "DEALENGINE_DB": str(tmp_path / "s.db")}
    env.pop("DEALENGINE_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "dealengine.cli", "project", "--follow"], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1 and "--follow needs PostgreSQL" in done.stderr


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
