"""A view stores no lead's or deal's state (issue 21): a catch-up run holds the states it
folds, and folds a lead or deal it does not hold from its stream's earlier events. Random
histories recorded in random parts, caught up in tiny batches by runs that let their states
go every few leads, equal the plain reference (tests/test_views.py); so do views that fold
a lead whose signup was voided before they were built, and leads with several deals."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dealengine import Engine, Settings
from dealengine.demo import generate
from dealengine.views import materialised
from dealengine.views.materialised import Batch, FunnelAdapter

from .test_materialised_views import fresh_store
from .test_view_partitions import assert_views_equal_the_reference, ingest


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    size=st.integers(30, 120),
    cuts=st.lists(st.floats(0, 1), max_size=5),
    batch=st.integers(1, 60),
    held=st.integers(0, 40),
    partitions=st.sampled_from([1, 3]),
)
# a deal opened at the end of one batch, its lead converted in the next: found by the lead's
# lead_converted when the run folds that lead from the store
@example(seed=2706, size=119, cuts=[], batch=37, held=0, partitions=1)
def test_views_caught_up_by_runs_that_let_their_states_go_equal_the_reference(
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    size: int,
    cuts: list[float],
    batch: int,
    held: int,
    partitions: int,
) -> None:
    lines = generate(size, seed)
    bounds = sorted({0, len(lines), *(int(c * len(lines)) for c in cuts)})
    monkeypatch.setattr(materialised, "HELD", held)  # a run lets its states go past `held`
    with fresh_store(backend, tmp_path) as store:
        tiny = store.model_copy(update={"view_batch": batch, "view_partitions": partitions})
        with Engine(tiny) as engine:
            for start, end in itertools.pairwise(bounds):
                ingest(engine, lines[start:end])
                engine.live_funnel(), engine.live_pipeline()  # a run each: nothing held
            assert_views_equal_the_reference(engine, lines)


def test_a_lead_voided_before_the_view_was_built_is_folded_without_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given half the history, a signup voided, the views built in batches of 7 by a run
    holding 3 leads at most (it folds leads from the store while the void is still ahead of
    it), then the rest of the history (the next run folds that lead from the store, void
    and all), then both views equal the reference without the signup."""
    lines = generate(200, 3)
    half = len(lines) // 2
    first: dict[str | None, dict[str, Any]] = {}
    for line in lines:
        first.setdefault(line.get("lead_id"), line)

    def touched(lead: str, start: int, end: int) -> bool:
        return any(x.get("lead_id") == lead for x in lines[start:end])

    voided = next(  # not a lead's first touch: voiding that would break the lead's rules
        line
        for i, line in enumerate(lines[:half])
        if line["type"] in ("newsletter_signed_up", "content_downloaded")
        and first[line["lead_id"]] is not line
        and touched(line["lead_id"], i + 1, half)  # a load while building: the void ahead
        and touched(line["lead_id"], half, len(lines))  # a load once built
    )
    monkeypatch.setattr(materialised, "HELD", 3)
    with Engine(settings.model_copy(update={"view_batch": 7})) as engine:
        ingest(engine, lines[:half])
        lead = voided["lead_id"]
        [signup] = [e for e in engine.history(lead) if e.idempotency_key == voided["id"]]
        engine.void(lead, f"v{signup.originator_version}", reason="test")
        engine.live_funnel(), engine.live_pipeline()
        assert_views_equal_the_reference(engine, [x for x in lines[:half] if x is not voided])
        ingest(engine, lines[half:])
        engine.live_funnel(), engine.live_pipeline()
        assert_views_equal_the_reference(engine, [x for x in lines if x is not voided])


def opened(deal: str, lead: str, day: int, amount: str) -> dict[str, Any]:
    return {"type": "deal_opened", "deal_id": deal, "lead_id": lead, "amount": amount,
            "owner": "ana", "occurred_at": f"2026-03-{day:02d}T10:00:00Z"}  # fmt: skip


def test_a_lead_with_several_deals_is_folded_from_the_store_with_all_of_them(
    settings: Settings,
) -> None:
    """A lead with three deals, recorded across three queries: each query's run folds the
    lead from the store with its earlier deals; the funnel counts it once at each step it
    reached (written out by hand), the pipeline counts three deals."""
    touch = {"type": "site_visited", "lead_id": "L-1", "channel": "web",
             "occurred_at": "2026-03-01T10:00:00Z"}  # fmt: skip
    qualified = {"type": "lead_qualified", "lead_id": "L-1", "by": "sdr",
                 "occurred_at": "2026-03-02T10:00:00Z"}  # fmt: skip
    won = {"type": "deal_won", "deal_id": "D-1", "occurred_at": "2026-03-09T10:00:00Z"}
    parts = [
        [touch, qualified, opened("D-1", "L-1", 3, "100")],
        [opened("D-2", "L-1", 4, "200"), won],
        [opened("D-3", "L-1", 5, "300")],
    ]
    with Engine(settings) as engine:
        for part in parts:
            ingest(engine, part)
            funnel, _ = engine.live_funnel()
            pipeline, _ = engine.live_pipeline()
        assert funnel.leads == 1
        assert [s.leads for s in funnel.steps] == [1] * 7  # won: it reached the last step
        assert (pipeline.won.deals, pipeline.won.amount) == (1, 100)
        prospecting = pipeline.stages[0]
        assert (prospecting.open_deals, prospecting.amount) == (2, 500)


def test_a_run_overtaken_by_another_folds_again_from_the_position_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given two engines on one SQLite store: a run starts building the views; more events
    are recorded; a second run starts building them too, from position 0 and further on.
    When the first writes first, the second's write (its counts made from position 0) is
    refused; it reads the position written and folds only the events after it: the views
    count each event once (the reference)."""
    store = Settings(db=str(tmp_path / "s.db"), database_url=None)
    lines = generate(200, 9)
    half = len(lines) // 2
    with Engine(store) as engine:
        ingest(engine, lines[:half])
    real = FunnelAdapter.process
    gates: dict[str, tuple[threading.Event, threading.Event]] = {}  # a run's: arrived, go on
    failures: list[BaseException] = []

    def process(self: FunnelAdapter, batch: Batch, held: Any) -> None:
        gate = gates.pop(threading.current_thread().name, None)
        if gate is not None:  # paused in its first batch
            gate[0].set()
            assert gate[1].wait(10)
        real(self, batch, held)

    def build() -> None:
        try:
            with Engine(store) as engine:
                engine.view("funnel").catch_up(), engine.view("pipeline").catch_up()
        except BaseException as e:  # reported in the test's own thread
            failures.append(e)

    monkeypatch.setattr(FunnelAdapter, "process", process)
    runs = []
    for name in ("first", "second"):
        gates[name] = gate = (threading.Event(), threading.Event())
        runs.append((threading.Thread(target=build, name=name), gate[1]))
        runs[-1][0].start()
        assert gate[0].wait(10)
        if name == "first":
            with Engine(store) as engine:
                ingest(engine, lines[half:])
    for thread, go_on in runs:
        go_on.set()
        thread.join(30)
    assert failures == []
    with Engine(store) as engine:
        assert_views_equal_the_reference(engine, lines)
