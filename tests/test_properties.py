"""Properties over random generated histories (hypothesis): as-of equals a rebuild over only
the events that occurred by then; reached counts never rise from one step to the next;
ordered counts never exceed reached counts."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dealengine import Engine
from dealengine.demo import START, generate
from dealengine.domain.events import format_time
from dealengine.domain.lines import interaction_from
from dealengine.projections.funnel import FunnelProjection
from dealengine.projections.stream import StreamEvent


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


@settings(max_examples=200, deadline=None)
@given(
    paths=st.lists(
        st.lists(st.tuples(st.integers(0, 40), st.integers(0, 4)), min_size=1, max_size=9),
        min_size=1,
        max_size=30,
    ),
    window=st.sampled_from([1, 5, 12, 30]),
    mode=st.sampled_from(["ordered", "strict"]),
)
def test_ordered_summary_takes_each_lead_s_path_by_the_general_rule(
    paths: list[list[tuple[int, int]]], window: int, mode: str
) -> None:
    """The ordered summaries count each lead where `FunnelProjection.path` (every attempt
    tried on the lead's whole sequence, the rule of docs/funnel-semantics.md) puts it: the
    fold keeps a lead's sequence only once a step repeats (the summary reads the path off its
    earliest times until then)."""
    with Engine.in_memory() as engine:
        definition = engine.funnel_definition.model_copy(
            update={"mode": mode, "conversion_window_days": window, "cohort": "week"}
        )
    fold = FunnelProjection(definition)
    state = fold.initial()
    expected: Counter[tuple[int, str]] = Counter()
    days: list[list[float]] = [[] for _ in range(fold.steps)]
    for n, events in enumerate(paths):
        lead = f"L{n}"
        sequence = [(format_time(START + timedelta(days=day)), step) for day, step in events]
        for position, (at, step) in enumerate(sequence):  # in this order, not in time order
            event_type = definition.steps[step].events[0]
            fold.apply(
                state, StreamEvent(position, f"lead:{lead}", event_type, {"occurred_at": at})
            )
        earliest: list[str | None] = [None] * fold.steps
        for at, step in sorted(sequence):
            earliest[step] = earliest[step] or at
        assert state.earliest[lead] == earliest
        path = fold.path(earliest, sequence)
        if path is not None:  # counted by furthest step and week of entry (its first step)
            times = [datetime.fromisoformat(t) if t else None for t in path.times]
            assert times[0] is not None
            expected[path.furthest, f"{times[0]:%G-W%V}"] += 1
            for a in range(path.furthest):  # days between steps, all reached in order here
                days[a].append(((times[a + 1] or times[a]) - times[a]).total_seconds() / 86400)
            if path.furthest == fold.steps - 1:
                days[-1].append(((times[-1] or times[0]) - times[0]).total_seconds() / 86400)
    totals = fold.summarise(state)
    counted: Counter[tuple[int, str]] = Counter()
    for (furthest, week, *_), count in totals.combinations.items():
        counted[furthest, week] += count
    assert counted == expected
    assert totals.days == [sorted(d) for d in days]


def every_attempt(
    events: list[tuple[str, int]], steps: int, window_end: object, strict: bool
) -> tuple[int, list[str | None]] | None:
    """docs/funnel-semantics.md's ordered and strict rules, every attempt tried (no step
    windows): the furthest attempt, the earliest of equally far ones."""
    best: tuple[int, list[str | None]] | None = None
    for i, (entry_at, step) in enumerate(events):
        if step:
            continue
        k, times = 0, [entry_at] + [None] * (steps - 1)
        end = window_end(entry_at)  # type: ignore[operator]
        for at, s in events[i + 1 :]:
            if at > end or k == steps - 1:
                break
            if s == k + 1:
                k, times[s] = s, at
            elif strict and s != k:
                break
        if best is None or k > best[0]:
            best = (k, times)
    return best


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 4)), min_size=1, max_size=12),
    window=st.sampled_from([1, 5, 12, 30]),
    mode=st.sampled_from(["ordered", "strict"]),
)
def test_the_ordered_path_is_the_furthest_of_every_attempt(
    events: list[tuple[int, int]], window: int, mode: str
) -> None:
    """`FunnelProjection.path` stops trying entries once one reached the last step or (in
    ordered mode, without step windows) one its window did not cut: it counts what trying
    every entry counts."""
    with Engine.in_memory() as engine:
        definition = engine.funnel_definition.model_copy(
            update={"mode": mode, "conversion_window_days": window}
        )
    fold = FunnelProjection(definition)
    sequence = sorted((format_time(START + timedelta(days=day)), step) for day, step in events)
    earliest: list[str | None] = [None] * fold.steps
    for at, step in sequence:
        earliest[step] = earliest[step] or at
    path = fold.path(earliest, sequence)
    expected = every_attempt(sequence, fold.steps, fold._window_ends[0], mode == "strict")
    assert (path.furthest, path.times) == expected if path else expected is None
