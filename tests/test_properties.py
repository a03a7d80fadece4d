"""Properties over random generated histories (hypothesis): as-of equals a rebuild over only
the events that occurred by then; reached counts never rise from one step to the next;
ordered counts never exceed reached counts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dealengine import Engine
from dealengine.demo import START, generate
from dealengine.domain.events import format_time
from dealengine.ingest.jsonl import interaction_from


def ingest(engine: Engine, lines: list[dict[str, object]]) -> None:
    outcomes = engine.execute_batch([interaction_from(line, "test", "test") for line in lines])
    assert not [o for o in outcomes if isinstance(o, Exception)]


def leads(view: object) -> list[int]:
    return [s.leads for s in view.steps]  # type: ignore[attr-defined]


NOW = datetime(2026, 12, 1, tzinfo=UTC)
common = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@common
@given(seed=st.integers(0, 10_000), days=st.integers(0, 330), size=st.integers(20, 120))
def test_as_of_equals_a_rebuild_over_the_events_that_occurred_by_then(
    seed: int, days: int, size: int
) -> None:
    lines = generate(size, seed)
    moment = START + timedelta(days=days, hours=seed % 24)
    bound = format_time(moment)
    with (
        Engine.in_memory(clock=lambda: NOW) as everything,
        Engine.in_memory(clock=lambda: NOW) as past,
    ):
        ingest(everything, lines)
        ingest(
            past,
            [
                ln
                for ln in lines
                if format_time(datetime.fromisoformat(str(ln["occurred_at"]))) <= bound
            ],
        )
        for mode in ("reached", "ordered", "strict"):
            assert everything.funnel(as_of=moment, mode=mode).model_dump(
                exclude={"as_of"}
            ) == past.funnel(as_of=moment, mode=mode).model_dump(exclude={"as_of"})
        assert everything.pipeline(as_of=moment) == past.pipeline(as_of=moment)


@common
@given(seed=st.integers(0, 10_000), size=st.integers(20, 150), window=st.integers(1, 120))
def test_reached_never_rises_and_ordered_never_exceeds_reached(
    seed: int, size: int, window: int
) -> None:
    with Engine.in_memory() as engine:
        ingest(engine, generate(size, seed))
        reached = leads(engine.funnel())
        assert all(a >= b for a, b in itertools.pairwise(reached))
        for mode in ("ordered", "strict"):
            counted = leads(engine.funnel(mode=mode, conversion_window_days=window))
            assert all(o <= r for o, r in zip(counted, reached, strict=True)), (
                mode,
                counted,
                reached,
            )
            assert all(a >= b for a, b in itertools.pairwise(counted))
        strict = leads(engine.funnel(mode="strict", conversion_window_days=window))
        ordered = leads(engine.funnel(mode="ordered", conversion_window_days=window))
        assert all(s <= o for s, o in zip(strict, ordered, strict=True))
