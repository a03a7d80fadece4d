"""Materialised views: catching up from position 0 (events/s), and the latency of a query on
the view (flat as history grows) beside DuckDB recomputing the funnel and pipeline."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from baselines import duckdb_views
from dealengine import Engine
from dealengine.domain.definitions import load_funnel, load_pipeline
from harness import BACKENDS, SIZES, Summary, history, measure, summary


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
