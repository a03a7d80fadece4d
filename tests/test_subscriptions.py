"""Durable subscribers: every event and derived notice in recorded order, positions kept in
the store, retries then parking, replay; on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from dealengine import Engine
from dealengine.subscriptions.dispatch import Retry
from dealengine.subscriptions.notices import Notice

FAST = Retry(first=0.01, longest=0.02, give_up_after=0.05)


def a_won_deal(engine: Engine) -> None:
    engine.record("ad_viewed", "L-1", "2026-03-01T10:00:00Z", channel="paid", campaign="c")
    engine.record("lead_qualified", "L-1", "2026-03-02T10:00:00Z", by="sdr")
    engine.record(
        "deal_opened", "D-1", "2026-03-03T10:00:00Z", lead_id="L-1", amount="100", owner="ana"
    )
    engine.record("proposal_sent", "D-1", "2026-03-04T10:00:00Z")
    engine.record("deal_won", "D-1", "2026-03-05T10:00:00Z", amount="100")


def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_subscriber_is_told_every_event_and_each_stage_and_step_in_order(engine: Engine) -> None:
    got: list[Notice] = []
    # given a deal won after its lead was qualified
    a_won_deal(engine)
    # when a subscriber is registered from the start
    engine.subscribe("crm-sync", got.append, run=False)
    engine.subscriptions.catch_up("crm-sync")
    # then it is told every event, in recorded order, and what they meant for stage and step
    told = [(n.type, n.stage or n.step or n.aggregate_id) for n in got]
    assert told == [
        ("ad_viewed", "L-1"), ("lead.step_reached", "awareness"),
        ("lead_qualified", "L-1"), ("lead.step_reached", "qualified"),
        ("deal_opened", "D-1"), ("deal.stage_entered", "prospecting"),
        ("lead.step_reached", "opportunity"),
        ("lead_converted", "L-1"),
        ("proposal_sent", "D-1"), ("deal.stage_entered", "proposal"),
        ("deal_won", "D-1"), ("deal.stage_entered", "closed_won"), ("lead.step_reached", "won"),
    ]  # fmt: skip
    won = [n for n in got if n.type == "deal.stage_entered"][-1]
    assert (won.from_stage, won.lead_id, won.version) == ("proposal", "L-1", 3)
    assert len({n.id for n in got}) == len(got)
    assert [n.position for n in got] == sorted(n.position for n in got)


def test_a_type_filter_picks_events_and_one_stage(engine: Engine) -> None:
    got: list[Notice] = []
    a_won_deal(engine)
    engine.subscribe(
        "wins", got.append, types=["deal.stage_entered:closed_won", "lead_qualified"], run=False
    )
    engine.subscriptions.catch_up("wins")
    assert [(n.type, n.stage) for n in got] == [
        ("lead_qualified", None), ("deal.stage_entered", "closed_won"),
    ]  # fmt: skip
    status = {p.name: (p.position, head) for p, head in engine.subscriptions.status()}
    assert status["wins"] == (engine.store.position(), engine.store.position())


def test_a_subscriber_resumes_where_it_stopped_in_another_engine(
    open_engine: Callable[[], Engine],
) -> None:
    first = open_engine()
    a_won_deal(first)
    seen: list[str] = []
    first.subscribe("s", lambda n: seen.append(n.id), run=False)
    first.subscriptions.catch_up("s")
    first.record("deal_reopened", "D-1", "2026-03-06T10:00:00Z", reason="signed wrong")
    again = open_engine()
    later: list[Notice] = []
    again.subscribe("s", later.append, run=False)
    again.subscriptions.catch_up("s")
    assert [(n.type, n.stage) for n in later] == [
        ("deal_reopened", None), ("deal.stage_entered", "proposal"),
    ]  # fmt: skip


def test_a_new_subscriber_may_start_at_the_head(engine: Engine) -> None:
    a_won_deal(engine)
    got: list[Notice] = []
    engine.subscribe("from-now", got.append, from_start=False, run=False)
    engine.record("ad_viewed", "L-2", "2026-03-07T10:00:00Z", channel="paid", campaign="c")
    engine.subscriptions.catch_up("from-now")
    assert [n.aggregate_id for n in got] == ["L-2", "L-2"]


def test_a_failing_handler_is_retried_then_parked_and_replay_resumes(engine: Engine) -> None:
    a_won_deal(engine)
    calls: list[str] = []
    broken = {"proposal_sent"}

    def handler(notice: Notice) -> None:
        calls.append(notice.type)
        if notice.type in broken:
            raise RuntimeError("the CRM is down")

    engine.subscribe("crm", handler, types=["proposal_sent", "deal_won"], retry=FAST, run=False)
    engine.subscriptions.catch_up("crm")
    # then it was tried a few times and parked at the proposal, not moving past it
    assert calls.count("proposal_sent") >= 3 and "deal_won" not in calls
    [(position, head)] = engine.subscriptions.status()
    assert position.parked and position.parked_position == 5 and position.position == 4
    assert position.parked_error == "RuntimeError: the CRM is down"
    assert head == 6
    # when the CRM is back and the operator replays from the parked event
    broken.clear()
    engine.subscriptions.replay("crm", None)
    engine.subscriptions.catch_up("crm")
    assert calls[-2:] == ["proposal_sent", "deal_won"]
    [(position, _)] = engine.subscriptions.status()
    assert (position.position, position.parked) == (6, False)


def test_replay_from_a_position_hands_the_events_after_it_again(engine: Engine) -> None:
    a_won_deal(engine)
    got: list[int] = []
    engine.subscribe(
        "s", lambda n: got.append(n.position), types=["deal_won", "deal_opened"], run=False
    )
    engine.subscriptions.catch_up("s")
    engine.subscriptions.replay("s", 4)
    engine.subscriptions.catch_up("s")
    assert got == [3, 6, 6]


def test_a_transactional_subscriber_writes_exactly_once_with_its_position(engine: Engine) -> None:
    tables = engine.subscriptions.tables
    engine.subscriptions.ensure_tables()
    with tables.transaction(commit=True) as c:
        c.execute(tables.sql("CREATE TABLE {p}seen_by_crm (notice TEXT NOT NULL)"))
    a_won_deal(engine)
    failures = iter([True, False])

    def handler(notice: Notice, cursor: Any) -> None:
        cursor.execute(tables.sql("INSERT INTO {p}seen_by_crm (notice) VALUES (?)"), (notice.id,))
        if notice.type == "deal_won" and next(failures):
            raise RuntimeError("after writing: the transaction is rolled back")

    engine.subscribe("crm", handler, transactional=True, retry=FAST, run=False)
    engine.subscriptions.catch_up("crm")
    with tables.transaction(commit=False) as c:
        c.execute(tables.sql("SELECT notice FROM {p}seen_by_crm"))
        rows = [r["notice"] for r in c.fetchall()]
    assert len(rows) == len(set(rows)) == 13


def test_subscribers_in_threads_of_two_engines_hand_each_notice_once(
    open_engine: Callable[[], Engine],
) -> None:
    # given two app instances on one store, each running the same subscriber
    got: list[tuple[str, str]] = []
    lock = threading.Lock()

    def handler_of(engine: str) -> Callable[[Notice], None]:
        def handle(notice: Notice) -> None:
            with lock:
                got.append((engine, notice.id))

        return handle

    one, two = open_engine(), open_engine()
    one.subscribe("sync", handler_of("one"))
    two.subscribe("sync", handler_of("two"))
    # when events are recorded
    a_won_deal(one)
    # then one owner hands each notice, once
    wait_for(lambda: len(got) >= 13)
    time.sleep(0.5)
    ids = [i for _, i in got]
    assert len(ids) == len(set(ids)) == 13
    assert len({e for e, _ in got}) == 1
