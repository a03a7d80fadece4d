"""Writing: one command per save, batched JSONL ingest, and (d) eventsourcing's batched save."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from baselines import es_save, notifications
from dealengine import Engine
from dealengine.domain.events import DomainEvent
from dealengine.domain.lines import interaction_from
from dealengine.ingest.jsonl import IngestReport, ingest_jsonl
from harness import BACKENDS, ONE_BY_ONE, SIZES, SMALL, events_in, history, measure


@pytest.mark.parametrize("backend", BACKENDS)
def test_ingest_one_command_per_save(
    benchmark: BenchmarkFixture, fresh: Callable[[], Engine], backend: str
) -> None:
    lines = history(SMALL).lines(ONE_BY_ONE[backend])

    def ingest(engine: Engine) -> int:
        for line in lines:
            engine.execute_batch([interaction_from(line, source="bench", actor="bench")])
        return engine.store.position()

    stored = measure(
        benchmark,
        ingest,
        setup=lambda: ((fresh(),), {}),
        group="ingest-one",
        case="dealengine",
        backend=backend,
        size=len(lines),
        events=events_in(lines),
    )
    assert stored == events_in(lines)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
def test_ingest_batched(
    benchmark: BenchmarkFixture, fresh: Callable[[], Engine], size: int, backend: str
) -> None:
    source = history(size)

    def ingest(engine: Engine) -> IngestReport:
        return ingest_jsonl(engine, source.jsonl, actor="bench")

    report = measure(
        benchmark,
        ingest,
        setup=lambda: ((fresh(),), {}),
        group="ingest-batched",
        case="dealengine",
        backend=backend,
        size=size,
        events=source.events,
    )
    assert (report.events, report.rejected) == (source.events, [])


@pytest.fixture(scope="session")
def prebuilt(stores: Callable[[int, str], Engine]) -> Callable[[int], list[DomainEvent]]:
    """The validated events of the history of `size` lines, built once."""
    built: dict[int, list[DomainEvent]] = {}

    def of(size: int) -> list[DomainEvent]:
        if size not in built:
            built[size] = [event for _, event in notifications(stores(size, "sqlite"))]
        return built[size]

    return of


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
def test_ingest_baseline_es_save(
    benchmark: BenchmarkFixture,
    fresh: Callable[[], Engine],
    prebuilt: Callable[[int], list[DomainEvent]],
    size: int,
    backend: str,
) -> None:
    events = prebuilt(size)
    stored = measure(
        benchmark,
        lambda engine: es_save(engine, events),
        setup=lambda: ((fresh(),), {}),
        group="ingest-batched",
        case="d",
        backend=backend,
        size=size,
        events=len(events),
    )
    assert stored == len(events)
