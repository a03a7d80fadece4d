"""Many threads, one Engine (what a web app does), on SQLite and PostgreSQL.

Given a store with one open deal and a few shared leads, when 8 writer threads record on them
(every writer changing the one deal's amount, visiting shared leads, opening its own deal) while
2 reader threads read states, histories and views through the same Engine, then no thread sees
an exception, every write lands exactly once and in each writer's order, the views equal a fresh
Engine's, and the writers in one process almost never need an optimistic-concurrency retry.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dealengine import Engine, Interaction, Settings

from .conftest import Clock
from .test_materialised_views import counts_of_funnel, counts_of_pipeline

WRITERS, READERS, ROUNDS = 8, 2, 40
SHARED_LEADS = [f"L-s{i}" for i in range(4)]
DEAL = "D-0"
DEADLINE = 120.0  # seconds: a hung thread fails the test instead of hanging the suite
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(writer: int, n: int) -> str:
    return (START + timedelta(days=1, minutes=writer * 100 + n)).isoformat()


class Writes:
    """What one writer thread asked for and what it was told was stored."""

    def __init__(self) -> None:
        self.calls = 0  # record / execute_batch calls that stored events
        self.stored: Counter[str] = Counter()  # events per stream
        self.keys: dict[str, list[str]] = {}  # idempotency keys stored, per stream, in order

    def note(self, events: list[Any]) -> None:
        self.calls += 1
        for event in events:
            self.stored[event.originator_id] += 1
            self.keys.setdefault(event.originator_id, []).append(event.idempotency_key)


def seed(engine: Engine) -> None:
    engine.record("ad_viewed", "L-0", START.isoformat(), channel="paid_search", campaign="c")
    engine.record("lead_qualified", "L-0", START.isoformat(), by="sdr")
    engine.record("deal_opened", DEAL, START.isoformat(), lead_id="L-0", amount="1000", owner="o")
    for lead in SHARED_LEADS:
        engine.record("site_visited", lead, START.isoformat(), channel="web")


def write(engine: Engine, writer: int, writes: Writes) -> None:
    """Many amount changes on the one deal, visits on its own and the shared leads (two
    streams in one batch), its own deal opened and moved on, and a webhook every writer
    replays (stored once in all)."""
    own = f"L-w{writer}"
    for n in range(ROUNDS):
        result = engine.record(
            "deal_amount_changed",
            DEAL,
            at(writer, n),
            amount=str(2000 + 100 * writer + n),
            reason=f"writer {writer} round {n}",
            idempotency_key=f"amount-w{writer}-{n}",
        )
        writes.note(result.events)
        batch = [
            Interaction("site_visited", own, at(writer, n), {"channel": "web"},
                        idempotency_key=f"visit-w{writer}-{n}"),
            Interaction("site_visited", SHARED_LEADS[(writer + n) % len(SHARED_LEADS)],
                        at(writer, n), {"channel": "social"},
                        idempotency_key=f"shared-w{writer}-{n}"),
        ]  # fmt: skip
        outcomes = engine.execute_batch(batch)
        assert all(not isinstance(o, Exception) for o in outcomes), outcomes
        writes.note([e for o in outcomes if not isinstance(o, Exception) for e in o.events])
        if n == 3:
            writes.note(engine.record("lead_qualified", own, at(writer, n), by="sdr").events)
            writes.note(
                engine.record(
                    "deal_opened", f"D-w{writer}", at(writer, n), lead_id=own, amount="500",
                    owner=f"owner-{writer % 3}",
                ).events
            )  # fmt: skip
        if n == 5:
            webhook = engine.record(
                "proposal_sent", DEAL, at(0, 5), amount="3000", idempotency_key="webhook-1"
            )
            if webhook.events:
                writes.note(webhook.events)
        if n == 9:
            writes.note(engine.record("proposal_sent", f"D-w{writer}", at(writer, n)).events)


def read(engine: Engine, reader: int, stop: threading.Event, reads: list[int]) -> None:
    """States, histories and views, over and over; each read sees no less than the last."""
    last_version = last_history = 0
    while not stop.is_set() or reads[reader] == 0:
        deal = engine.deal(DEAL)
        assert deal.version >= last_version and deal.amount >= 0
        last_version = deal.version
        for lead in SHARED_LEADS:
            assert engine.lead(lead).version >= 1
        history = engine.history(DEAL)
        assert len(history) >= last_history
        assert [e.originator_version for e in history] == list(range(1, len(history) + 1))
        last_history = len(history)
        if (reads[reader] + reader) % 2 == 0:  # the two readers take turns
            funnel, pipeline = engine.views()
            assert funnel.leads >= 1 + len(SHARED_LEADS) and pipeline.stages
        else:
            live_funnel, _ = engine.live_funnel()
            live_pipeline, _ = engine.live_pipeline()
            assert live_funnel.leads >= 1 + len(SHARED_LEADS) and live_pipeline.stages
        reads[reader] += 1


def run_threads(targets: list[Callable[[], None]], stop: threading.Event) -> list[BaseException]:
    """Run every target in its own thread; the readers are stopped once the writers are done."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as e:  # anything at all, in any thread, fails the test
                errors.append(e)

        return run

    threads = [threading.Thread(target=guarded(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    writers, readers = threads[:WRITERS], threads[WRITERS:]
    deadline = threading.Event()
    timer = threading.Timer(DEADLINE, deadline.set)
    timer.start()
    try:
        for thread in writers:
            thread.join(DEADLINE)
        stop.set()
        for thread in readers:
            thread.join(DEADLINE)
    finally:
        timer.cancel()
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, f"threads still running after {DEADLINE} s: {hung}"
    return errors


@pytest.fixture
def shared(settings: Settings, clock: Clock) -> Iterator[Engine]:
    with Engine(settings, clock=clock) as engine:
        seed(engine)
        yield engine


def test_writers_and_readers_share_one_engine(
    shared: Engine, settings: Settings, clock: Clock
) -> None:
    streams = [f"deal:{DEAL}", *(f"lead:{lead}" for lead in SHARED_LEADS)]
    before = {s: len(shared.history(s)) for s in streams}
    writes = [Writes() for _ in range(WRITERS)]
    reads = [0] * READERS
    stop = threading.Event()
    targets: list[Callable[[], None]] = [
        *(lambda w=w: write(shared, w, writes[w]) for w in range(WRITERS)),  # type: ignore[misc]
        *(lambda r=r: read(shared, r, stop, reads) for r in range(READERS)),  # type: ignore[misc]
    ]
    errors = run_threads(targets, stop)
    assert errors == [], [f"{type(e).__name__}: {e}" for e in errors]
    assert all(reads), reads

    # every write landed exactly once, and each writer's amount changes in its own order
    stored: Counter[str] = sum((w.stored for w in writes), Counter())
    for stream in stored.keys() | before.keys():
        history = shared.history(stream)
        assert len(history) == before.get(stream, 0) + stored[stream], stream
        keys = [e.idempotency_key for e in history if e.idempotency_key is not None]
        assert len(set(keys)) == len(keys), f"{stream}: a key stored twice"
    amounts = [e for e in shared.history(DEAL) if e.event_type == "deal_amount_changed"]
    assert len(amounts) == WRITERS * ROUNDS
    for w in range(WRITERS):
        mine = [e.idempotency_key for e in amounts if e.idempotency_key.startswith(f"amount-w{w}-")]
        assert mine == [f"amount-w{w}-{n}" for n in range(ROUNDS)]
    assert sum(1 for w in writes for k in w.keys.get(f"deal:{DEAL}", []) if k == "webhook-1") == 1
    assert shared.deal(DEAL).version == before[f"deal:{DEAL}"] + stored[f"deal:{DEAL}"]

    # the views equal a fresh Engine's views of the same store
    with Engine(settings, clock=clock) as fresh:
        assert shared.views() == fresh.views()
        live_funnel, lag = shared.live_funnel()
        assert lag.behind == 0
        assert counts_of_funnel(live_funnel) == counts_of_funnel(fresh.funnel())
        live_pipeline, _ = shared.live_pipeline()
        assert counts_of_pipeline(live_pipeline) == counts_of_pipeline(fresh.pipeline())

    # writers in one process wait for each other instead of conflicting and retrying
    calls = sum(w.calls for w in writes)
    assert calls >= WRITERS * ROUNDS * 2
    assert shared.retries <= calls // 100, (shared.retries, calls)


def test_a_refused_strict_batch_leaves_nothing_in_the_cache(memory_engine: Engine) -> None:
    """Given a strict batch whose second command is refused, nothing of it is stored, and the
    engine's cache does not keep the first command's lead either (a later write to it would
    otherwise be decided on a lead that does not exist)."""
    batch = [
        Interaction("site_visited", "L-9", "2026-03-01T10:00:00Z", {"channel": "web"}),
        Interaction("lead_qualified", "L-404", "2026-03-01T10:00:00Z", {"by": "sdr"}),
    ]
    outcomes = memory_engine.execute_batch(batch, strict=True)
    assert isinstance(outcomes[-1], Exception)
    assert memory_engine.execute_batch([], strict=True) == []
    memory_engine.record("site_visited", "L-9", "2026-03-02T10:00:00Z", channel="web")
    assert [e.originator_version for e in memory_engine.history("L-9")] == [1]
