"""Reading: full rebuild of funnel + pipeline against baselines (a), (b), (c); loading one deal;
peak memory of a rebuild. Each baseline is checked to compute the same numbers as the engine."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from baselines import duckdb_views, es_default_views, plain_views
from dealengine import Engine
from dealengine.domain.definitions import load_funnel, load_pipeline
from harness import BACKENDS, ROUNDS, RSS_SIZES, SIZES, Summary, history, measure, summary

FUNNEL, PIPELINE = load_funnel(), load_pipeline()


def rounds(size: int) -> int | None:
    """pytest-benchmark calibrates the quick cases; the slow ones run ROUNDS times."""
    return None if size < 100_000 else ROUNDS


@pytest.mark.parametrize("processes", [None, 1])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
def test_rebuild(
    benchmark: BenchmarkFixture, store: Engine, size: int, backend: str, processes: int | None
) -> None:
    """As configured by default (split over the cores from 50,000 events), and in one process."""
    settings = store.settings
    store.settings = settings.model_copy(update={"rebuild_processes": processes})
    try:
        measure(
            benchmark,
            store.views,
            group="rebuild",
            case="dealengine" if processes is None else "one-process",
            backend=backend,
            size=size,
            events=history(size).events,
            rounds=rounds(size),
        )
    finally:
        store.settings = settings


@pytest.mark.parametrize("size", SIZES)
def test_rebuild_baseline_plain(
    benchmark: BenchmarkFixture, expected: Callable[[int], Summary], size: int
) -> None:
    source = history(size)
    got = measure(
        benchmark,
        partial(plain_views, source.plain, FUNNEL, PIPELINE),
        group="rebuild",
        case="a",
        backend="sqlite",
        size=size,
        events=source.events,
        rounds=rounds(size),
    )
    assert got == expected(size)


@pytest.mark.parametrize("size", SIZES)
def test_rebuild_baseline_duckdb(
    benchmark: BenchmarkFixture, expected: Callable[[int], Summary], size: int
) -> None:
    source = history(size)
    got = measure(
        benchmark,
        partial(duckdb_views, source.jsonl, FUNNEL, PIPELINE),
        group="rebuild",
        case="b",
        backend="duckdb",
        size=size,
        events=source.events,
        rounds=rounds(size),
    )
    assert got == expected(size)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
def test_rebuild_baseline_es_default(
    benchmark: BenchmarkFixture,
    store: Engine,
    expected: Callable[[int], Summary],
    size: int,
    backend: str,
) -> None:
    got = measure(
        benchmark,
        partial(es_default_views, store),
        group="rebuild",
        case="c",
        backend=backend,
        size=size,
        events=history(size).events,
        rounds=rounds(size),
    )
    assert summary(got, PIPELINE) == expected(size)


@pytest.mark.parametrize("read", ["history", "deal"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
def test_load_one_deal(
    benchmark: BenchmarkFixture, store: Engine, size: int, backend: str, read: str
) -> None:
    deal_id = history(size).deal_id
    events = len(store.history(deal_id))
    measure(
        benchmark,
        partial(getattr(store, read), deal_id),
        group="load-deal",
        case=f"engine.{read}()",
        backend=backend,
        size=size,
        events=events,
        rounds=None,
    )


WORK = """
import json, sys
from dealengine import Engine, Settings
# in one process: the whole state in one place (split, each process holds its part)
with Engine(Settings(db=sys.argv[1], database_url=None, rebuild_processes=1)) as engine:
    if sys.argv[2] == "rebuild":
        funnel, pipeline = engine.views()
        open_deals = sum(s.open_deals for s in pipeline.stages)
        deals = open_deals + pipeline.won.deals + pipeline.lost.deals
        print(json.dumps({"leads": funnel.leads, "deals": deals}))
"""
PEAK = """
import json, resource, subprocess, sys
out = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, check=True).stdout
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"out": json.loads(out or "{}"), "peak": peak}))
"""


def run_child(db: str, action: str) -> tuple[dict[str, Any], int]:
    """Run WORK in a new interpreter: its output, and its peak RSS in bytes.

    A small interpreter in between reads getrusage(RUSAGE_CHILDREN): a child started straight
    from this (large) pytest process would begin its peak at this process's size.
    """
    argv = [sys.executable, "-c", PEAK, sys.executable, "-c", WORK, db, action]
    result = json.loads(subprocess.run(argv, stdout=subprocess.PIPE, check=True).stdout)
    return result["out"], result["peak"] * (1 if sys.platform == "darwin" else 1024)


@pytest.mark.parametrize("size", RSS_SIZES)
def test_rebuild_peak_rss(benchmark: BenchmarkFixture, size: int) -> None:
    source = history(size)
    _, idle = run_child(str(source.store), "open")
    counts, peak = measure(
        benchmark,
        partial(run_child, str(source.store), "rebuild"),
        group="rss",
        case="dealengine",
        backend="sqlite",
        size=size,
        events=source.events,
        rounds=1,
    )
    mb = 1024 * 1024
    benchmark.extra_info.update(counts, peak_rss_mb=round(peak / mb), idle_rss_mb=round(idle / mb))
    assert counts["leads"] > 0
