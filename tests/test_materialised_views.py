"""Materialised views: incrementally maintained views equal a full rebuild (random histories in
random batches, SQLite and PostgreSQL); a changed definition is refused until rebuilt; a rebuild
switches atomically while queries run; a projection process killed at random points resumes
exactly once."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dealengine import Engine, Settings
from dealengine.demo import generate
from dealengine.domain.lines import interaction_from
from dealengine.views.materialised import OutOfDate

from .conftest import PG_URL, need_postgres


def ingest(engine: Engine, lines: list[dict[str, Any]]) -> None:
    outcomes = engine.execute_batch([interaction_from(line, "t", "t") for line in lines])
    assert not [o for o in outcomes if isinstance(o, Exception)]


def renamed(lines: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The same history about other leads and deals."""
    keys = ("lead_id", "deal_id", "id")
    return [{k: prefix + v if k in keys else v for k, v in line.items()} for line in lines]


def counts_of_funnel(view: Any) -> dict[str, Any]:
    return view.model_dump(
        include={"steps", "by_channel", "breakdowns", "cohorts", "excluded_leads", "leads"}
    )


PIPELINE_FIELDS = {
    "won",
    "lost",
    "win_rate",
    "win_rate_by_amount",
    "average_deal_size",
    "lost_reasons",
    "forecast",
    "forecast_by_close_month",
}


def counts_of_pipeline(view: Any) -> dict[str, Any]:
    data = view.model_dump(include=PIPELINE_FIELDS)
    data["stages"] = [(s.name, s.open_deals, s.amount, s.weighted_amount) for s in view.stages]
    data["by_owner"] = {
        o: (b.won, b.lost, [(s.open_deals, s.amount) for s in b.stages])
        for o, b in view.by_owner.items()
    }
    return data


def assert_view_equals_rebuild(engine: Engine) -> None:
    live, lag = engine.live_funnel()
    assert lag.behind == 0
    assert counts_of_funnel(live) == counts_of_funnel(engine.funnel())
    for name in engine.pipelines.by_name:
        pipeline, _ = engine.live_pipeline(pipeline_name=name)
        assert counts_of_pipeline(pipeline) == counts_of_pipeline(
            engine.pipeline(pipeline_name=name)
        )


@contextmanager
def fresh_store(backend: str, tmp: Path) -> Iterator[Settings]:
    if backend == "sqlite":
        yield Settings(db=str(tmp / f"{uuid.uuid4().hex}.db"), database_url=None)
        return
    need_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield Settings(database_url=f"{PG_URL}?schema={schema}")
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    size=st.integers(30, 150),
    cuts=st.lists(st.floats(0, 1), max_size=6),
)
def test_incremental_view_equals_full_rebuild(
    backend: str, tmp_path: Path, seed: int, size: int, cuts: list[float]
) -> None:
    lines = generate(size, seed)
    bounds = sorted({0, len(lines), *(int(c * len(lines)) for c in cuts)})
    with fresh_store(backend, tmp_path) as store, Engine(store) as engine:
        for start, end in itertools.pairwise(bounds):
            ingest(engine, lines[start:end])
            engine.view("funnel").catch_up()
            engine.view("pipeline").catch_up()
        assert_view_equals_rebuild(engine)


def test_a_changed_definition_is_refused_until_rebuilt(tmp_path: Path) -> None:
    store = Settings(db=str(tmp_path / "s.db"), database_url=None)
    with Engine(store) as engine:
        ingest(engine, generate(60, 1))
        before, first = engine.live_funnel()
        stricter = engine.funnel_definition.model_copy(update={"exclusions": ["lead_disqualified"]})
    with Engine(store, funnel=stricter) as engine:
        with pytest.raises(OutOfDate, match="run `dealengine rebuild funnel`"):
            engine.live_funnel()
        engine.view("funnel").rebuild()
        after, lag = engine.live_funnel()
        assert after.excluded_leads > 0 and lag.view.startswith("funnel#")
        assert lag.view != first.view
        assert counts_of_funnel(after) == counts_of_funnel(engine.funnel())
        assert counts_of_funnel(before) != counts_of_funnel(after)


def test_a_rebuild_switches_atomically_while_queries_run(tmp_path: Path) -> None:
    store = Settings(db=str(tmp_path / "s.db"), database_url=None, view_batch=200)
    with Engine(store) as old:
        ingest(old, generate(1500, 5))
        old_view, _ = old.live_funnel()
        stricter = old.funnel_definition.model_copy(update={"exclusions": ["lead_disqualified"]})
    with Engine(store, funnel=stricter) as new:
        new_counts = counts_of_funnel(new.funnel())
    old_counts = counts_of_funnel(old_view)
    assert old_counts != new_counts
    seen: list[str] = []
    done = threading.Event()

    def query() -> None:
        with Engine(store) as reader:
            view = reader.view("funnel")
            while not done.is_set():
                _generation, rows = view.tables.counters("funnel")
                counts = counts_of_funnel(view.adapter.read(rows))
                assert counts in (old_counts, new_counts), "a query saw a half-built view"
                seen.append("old" if counts == old_counts else "new")

    reader = threading.Thread(target=query)
    reader.start()
    with Engine(store, funnel=stricter) as new:
        time.sleep(0.1)
        new.view("funnel").rebuild()
        time.sleep(0.2)
    done.set()
    reader.join()
    assert "old" in seen and "new" in seen and seen.index("new") > 0
    assert seen[seen.index("new") :].count("old") == 0


CATCH_UP = """
import sys
from dealengine import Engine, Settings
with Engine(Settings(db=sys.argv[1], database_url=sys.argv[2] or None)) as engine:
    engine.view("funnel").catch_up()
    engine.view("pipeline").catch_up()
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_projection_killed_at_random_points_resumes_exactly_once(
    backend: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    with fresh_store(backend, tmp_path) as store:
        with Engine(store) as engine:
            ingest(engine, generate(2500, 11))
        env = {**os.environ, "DEALENGINE_VIEW_BATCH": "150"}
        args = [sys.executable, "-c", CATCH_UP, store.db, store.database_url or ""]
        kills = 0
        while kills < 20:
            process = subprocess.Popen(args, env=env)
            time.sleep(rng.uniform(0.3, 1.2))
            if process.poll() is not None:  # finished before the kill: add more events, go on
                with Engine(store) as engine:
                    ingest(engine, renamed(generate(100, 100 + kills), f"K{kills}-"))
                continue
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
        subprocess.run(args, env=env, check=True)
        with Engine(store) as engine:
            assert_view_equals_rebuild(engine)


def test_a_correction_rebuilds_the_view_without_the_voided_event(memory_engine: Engine) -> None:
    e = memory_engine
    e.record("site_visited", "L-1", "2026-03-01T10:00:00Z", channel="web")
    e.record("lead_qualified", "L-1", "2026-03-02T10:00:00Z", by="sdr")
    e.record("deal_opened", "D-1", "2026-03-03T10:00:00Z", lead_id="L-1", amount="100", owner="ana")
    mistake = e.record(
        "deal_amount_changed", "D-1", "2026-03-04T10:00:00Z", amount="900", reason="typo"
    ).events[0]
    before, first = e.live_pipeline()
    assert before.stages[0].amount == 900
    e.void("D-1", str(mistake.id), reason="typed 900 for 100")
    after, lag = e.live_pipeline()
    assert after.stages[0].amount == 100 and lag.view != first.view and lag.behind == 0
    assert counts_of_pipeline(after) == counts_of_pipeline(e.pipeline())
    e.record("proposal_sent", "D-1", "2026-03-05T10:00:00Z")  # and incremental again afterwards
    assert_view_equals_rebuild(e)
