"""Tamper evidence: `engine.verify()` recomputes every stream's hash chain, streaming the store
by stream (events/s), beside the same streaming read with no hashing (what the checking adds).

Its group needs a title in run.py's TITLES for a table of its own in RESULTS.md:
"verify": "Verifying every hash chain (dealengine verify)".
"""

from __future__ import annotations

from collections import deque

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from dealengine import Engine
from dealengine.audit.verify import VerifyReport
from harness import BACKENDS, ROUNDS, SIZES, history, measure


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
def test_verify(benchmark: BenchmarkFixture, store: Engine, size: int, backend: str) -> None:
    report: VerifyReport = measure(
        benchmark,
        store.verify,
        group="verify",
        case="engine.verify()",
        backend=backend,
        size=size,
        events=history(size).events,
        rounds=None if size < 100_000 else ROUNDS,
    )
    assert report.ok, report.findings[:5]
    assert report.events == history(size).events


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
def test_verify_read_only(
    benchmark: BenchmarkFixture, store: Engine, size: int, backend: str
) -> None:
    measure(
        benchmark,
        lambda: deque(store.store.by_stream(), maxlen=0),
        group="verify",
        case="read by stream only (no hashing)",
        backend=backend,
        size=size,
        events=history(size).events,
        rounds=None if size < 100_000 else ROUNDS,
    )
