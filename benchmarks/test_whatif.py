"""What-if: the baseline and three scenarios folded in one read of the store (`what_ifs`),
beside one full rebuild of the same store (`engine.views()`, group `whatif` case `rebuild`):
the read is shared, only the folds and reports multiply.

Three mixes of three scenarios, from the cheapest to the dearest:
- pipeline-rules: probabilities, forecast categories, stale limits: every fold is shared with
  the baseline, only the pipeline reports are computed again;
- examples: a funnel rule (ordered, a 30-day window: its own funnel fold), a lead filter
  (shared folds, both reports on the selected leads), stage probabilities;
- own-streams: three scenarios that change the stream (deals lost after 45 days, one
  hypothetical deal, amounts scaled), each folding both views again in the same pass.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from dealengine import Engine
from harness import BACKENDS, SIZES, history, measure

SCENARIOS = Path(__file__).resolve().parents[1] / "projections" / "scenarios"
PROBABILITIES = {
    "name": "probabilities",
    "pipelines": {"new_business": {"stages": {"discovery": {"probability": 0.3}}}},
}
MIXES: dict[str, list[Any]] = {
    "pipeline-rules": [
        SCENARIOS / "conservative-forecast.toml",
        PROBABILITIES,
        {
            "name": "stale",
            "pipelines": {
                "new_business": {
                    "stages": {
                        "prospecting": {"stale_after_days": 10},
                        "discovery": {"stale_after_days": 10},
                    }
                }
            },
        },
    ],
    "examples": [
        SCENARIOS / "thirty-day-window.toml",
        SCENARIOS / "without-paid-social.toml",
        SCENARIOS / "conservative-forecast.toml",
    ],
    "own-streams": [
        SCENARIOS / "stalled-deals-lost.toml",
        SCENARIOS / "big-deal.toml",
        {"name": "discount", "transform": {"scale_amounts": 0.9}},
    ],
}


def rounds(size: int) -> int | None:
    """pytest-benchmark calibrates the quick cases; the slow ones run ROUNDS times."""
    return None if size < 100_000 else 3


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
def test_whatif_reference_rebuild(
    benchmark: BenchmarkFixture, store: Engine, size: int, backend: str
) -> None:
    measure(benchmark, store.views, group="whatif", case="rebuild", backend=backend, size=size,
            events=history(size).events, rounds=rounds(size))  # fmt: skip


@pytest.mark.parametrize("mix", list(MIXES))
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
def test_whatif(
    benchmark: BenchmarkFixture, store: Engine, size: int, backend: str, mix: str
) -> None:
    result = measure(benchmark, partial(store.what_ifs, MIXES[mix]), group="whatif", case=mix,
                     backend=backend, size=size, events=history(size).events,
                     rounds=rounds(size))  # fmt: skip
    assert len(result.scenarios) == 3
    funnel, pipeline = store.views()
    assert result.baseline.funnel.steps == funnel.steps
    stages = [(s.name, s.open_deals, s.amount) for s in pipeline.stages]
    assert [(s.name, s.open_deals, s.amount) for s in result.baseline.pipeline.stages] == stages
