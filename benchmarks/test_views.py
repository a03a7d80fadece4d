"""Materialised views: catching up from position 0 (events/s), and the latency of a query on
the view (flat as history grows) beside DuckDB recomputing the funnel and pipeline."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from baselines import duckdb_views
from dealengine import Engine, Settings
from dealengine.domain.definitions import load_funnel, load_pipeline
from harness import BACKENDS, SIZES, Summary, drop_views, history, measure, summary


def rebuild_views(store: Engine) -> int:
    return store.view("funnel").rebuild() + store.view("pipeline").rebuild()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
def test_view_catch_up(benchmark: BenchmarkFixture, store: Engine, size: int, backend: str) -> None:
    measure(benchmark, partial(rebuild_views, store), group="view-catch-up", case="dealengine",
            backend=backend, size=size, events=history(size).events)  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
def test_view_query(
    benchmark: BenchmarkFixture, store: Engine, size: int, backend: str,
    expected: Callable[[int], Summary],
) -> None:  # fmt: skip
    store.view("funnel").catch_up()
    store.view("pipeline").catch_up()

    def query() -> tuple[object, object]:
        funnel, _ = store.live_funnel(catch_up=False)
        pipeline, _ = store.live_pipeline(catch_up=False)
        return funnel, pipeline

    funnel, pipeline = measure(benchmark, query, group="view-query", case="dealengine",
                               backend=backend, size=size, events=history(size).events,
                               rounds=None)  # fmt: skip
    assert summary((funnel, pipeline), store.pipeline_definition) == expected(size)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", SIZES)
def test_view_query_duckdb(benchmark: BenchmarkFixture, size: int) -> None:
    source = history(size)
    measure(benchmark, partial(duckdb_views, source.jsonl, load_funnel(), load_pipeline()),
            group="view-query", case="duckdb", backend="duckdb", size=size, events=source.events,
            rounds=None)  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
def test_first_query_after_ingest(
    benchmark: BenchmarkFixture, store: Engine, size: int, backend: str,
    tmp_path_factory: pytest.TempPathFactory, expected: Callable[[int], Summary],
) -> None:  # fmt: skip
    """The first `dealengine funnel` and `pipeline` after an ingest (the views built from the
    whole stream), in alternating rounds with `funnel --full` and `pipeline --full` on the same
    store: its time, and the ratio of the medians in extra_info (RESULTS.md's last column)."""
    full: list[float] = []
    opened: list[Engine] = []

    def without_views() -> None:
        for engine in opened:
            engine.close()
        opened[:] = [_store_without_views(store, backend, tmp_path_factory)]
        began = time.perf_counter()
        opened[0].funnel(), opened[0].pipeline()  # --full, on the same store: round B
        full.append(time.perf_counter() - began)

    def first_query() -> tuple[object, object]:
        return opened[0].live_funnel()[0], opened[0].live_pipeline()[0]

    views = measure(benchmark, first_query, group="first-query", case="dealengine",
                    backend=backend, size=size, events=history(size).events,
                    setup=without_views)  # fmt: skip
    for engine in opened:
        engine.close()
    if benchmark.stats:  # not with --benchmark-disable (the smoke test)
        benchmark.extra_info["full_median_s"] = statistics.median(full)
        benchmark.extra_info["vs_full"] = benchmark.stats.stats.median / statistics.median(full)
        benchmark.extra_info["load"] = os.getloadavg()[0]
    assert summary(views, store.pipeline_definition) == expected(size)  # type: ignore[arg-type]


def _store_without_views(
    store: Engine, backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Engine:
    """A new Engine on the events of `store`, with no materialised view yet."""
    if backend == "sqlite":
        db = tmp_path_factory.mktemp("first-query") / "store.db"
        os.link(store.settings.db, db)  # the same events; the views go beside the link
        return Engine(Settings(db=str(db), database_url=None))
    url = store.settings.database_url
    assert url is not None
    drop_views(url)
    return Engine(Settings(database_url=url))
