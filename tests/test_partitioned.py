"""A rebuild split over processes (projections/partitioned.py) gives the numbers of one process.

The leads are split by the last character of their stream id, in SQL (recorders' `stream(part=)`)
and in Python (`in_partition`); every deal's events go to every partition.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dealengine import Engine, Settings, UndefinedInModel
from dealengine.demo import generate, write_jsonl
from dealengine.ingest.jsonl import ingest_jsonl
from dealengine.projections.funnel import in_partition
from tests.conftest import Clock
from tests.test_views import reference_funnel

NOW = datetime(2027, 1, 1, tzinfo=UTC)


def _engine(settings: Settings, processes: int) -> Engine:
    return Engine(settings.model_copy(update={"rebuild_processes": processes}), clock=lambda: NOW)


def _dump(view: Any) -> Any:
    return view.model_dump(mode="json")


STEP_EVENTS = {"site_visited", "ad_viewed", "newsletter_signed_up", "webinar_attended"}


def _voidable(lines: list[dict[str, Any]]) -> list[str]:
    """Two leads without a deal whose last line is a step event, in partitions 0 and 1 of 2."""
    last = {line["lead_id"]: line for line in lines if "lead_id" in line}
    with_deal = {line["lead_id"] for line in lines if line["type"] == "deal_opened"}
    found = {}
    for lead, line in sorted(last.items()):
        if lead not in with_deal and line["type"] in STEP_EVENTS:
            found.setdefault(ord(lead[-1]) % 2, lead)
    return [found[0], found[1]]


def test_a_rebuild_over_processes_equals_the_reference_and_one_process(
    settings: Settings, tmp_path: Path
) -> None:
    lines = generate(leads=400, seed=5)
    write_jsonl(tmp_path / "h.jsonl", lines)
    leads = _voidable(lines)
    with _engine(settings, 1) as one:
        assert not ingest_jsonl(one, tmp_path / "h.jsonl", actor="test").rejected
        for lead in leads:  # void each one's last event
            one.void(lead, str(one.store.events(f"lead:{lead}")[-1].id), reason="test")
        single = [_dump(v) for v in one.views()]
        modes = {m: _dump(one.funnel(mode=m)) for m in ("reached", "ordered", "strict")}
        past = datetime(2026, 3, 1, tzinfo=UTC)
        single_past = [_dump(v) for v in one.views(as_of=past)]

    for processes in (2, 3):
        with _engine(settings, processes) as split:
            funnel, pipeline = split.views()
            assert [_dump(funnel), _dump(pipeline)] == single
            for mode, view in modes.items():
                assert _dump(split.funnel(mode=mode)) == view
            assert [_dump(v) for v in split.views(as_of=past)] == single_past
            # and the numbers themselves, against plain code over the lines without the voids
            voided = {
                id(next(x for x in reversed(lines) if x.get("lead_id") == lead)) for lead in leads
            }
            overall, by_channel = reference_funnel([x for x in lines if id(x) not in voided])
            assert [s.leads for s in funnel.steps] == overall
            assert {
                c: [s.leads for s in b.steps] for c, b in funnel.by_channel.items()
            } == by_channel


def test_the_partitions_split_the_leads_and_share_the_deals(settings: Settings) -> None:
    ids = ["L-1", "L-2", "x", "é", "日本", "lead-ß", "Z9", "0"]
    with _engine(settings, 1) as engine:
        for lead in ids:
            engine.record("site_visited", lead, "2026-03-01T09:00:00Z", channel="seo")
        engine.record("lead_qualified", "L-1", "2026-03-02T09:00:00Z", by="ann")
        engine.record(
            "deal_opened", "D-7", "2026-03-03T09:00:00Z", lead_id="L-1", amount="10", owner="a"
        )
        every = list(engine.store.stream())
        leads = {row[0] for row in every if row[1].startswith("lead:")}
        deals = {row[0] for row in every if row[1].startswith("deal:")}
        assert len(leads) == len(ids) + 2 and deals
        for n in (2, 3, 5):
            seen: set[int] = set()
            for i in range(n):
                rows = list(engine.store.stream(0, None, (i, n)))
                mine = {r[0] for r in rows if r[1].startswith("lead:")}
                assert all(in_partition(r[1], (i, n)) for r in rows if r[0] in mine)
                assert {r[0] for r in rows} - mine == deals
                assert not mine & seen
                seen |= mine
            assert seen == leads


def test_an_error_in_a_child_process_reaches_the_caller(tmp_path: Path) -> None:
    settings = Settings(db=str(tmp_path / "s.db"), database_url=None)
    with _engine(settings, 2) as engine:
        engine.record("site_visited", "L-0", "2026-03-01T09:00:00Z", channel="seo")
        engine.record("site_visited", "L-1", "2026-03-01T09:00:00Z", channel="seo")
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute(
        "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
        "VALUES ('lead:L-1', 2, 'nowhere:Bogus', '{}')"
    )
    db.commit()
    db.close()
    assert in_partition("lead:L-1", (1, 2))  # so only the child reads it
    with (
        _engine(settings, 2) as engine,
        pytest.raises(UndefinedInModel, match="of type 'nowhere:Bogus', which the definitions"),
    ):
        engine.views()


def test_what_if_over_processes_equals_one_process(settings: Settings, clock: Clock) -> None:
    """Every example scenario, hypothetical events (of a lead in another partition than 0),
    a lead selection with an as-of: the same result split over 2 and 3 processes, and the
    store, opened read-only, unchanged."""
    from tests.test_whatif_store import EXAMPLES, HYPOTHETICAL, checksum, ingest

    scenarios: list[Any] = [
        *EXAMPLES,
        HYPOTHETICAL,
        {
            "name": "paid, past",
            "as_of": "2026-04-01",
            "filter": {"only": {"channels": ["paid_search"]}},
        },
        {"name": "ordered", "funnel": {"mode": "strict", "conversion_window_days": 20}},
    ]
    with Engine(settings, clock=clock) as writer:
        ingest(writer, generate(600, 7))
    before = checksum(settings)
    read_only = settings.model_copy(update={"read_only": True})
    with Engine(read_only.model_copy(update={"rebuild_processes": 1}), clock=clock) as one:
        single = one.what_ifs(scenarios).model_dump(mode="json")
    assert not in_partition("lead:L-NEW", (0, 2))
    for processes in (2, 3):
        split = Engine(read_only.model_copy(update={"rebuild_processes": processes}), clock=clock)
        with split:
            assert split.what_ifs(scenarios).model_dump(mode="json") == single
    assert checksum(settings) == before


def test_when_a_pass_is_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import threading

    import dealengine.projections.passes as module

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    monkeypatch.setattr(os, "getloadavg", lambda: (0.4, 2.0, 2.0))  # idle now
    cores = 3
    file = Settings(db=str(tmp_path / "s.db"), database_url=None)
    with Engine(file) as engine:
        assert engine.passes.split(49_999) == 1  # small
        assert engine.passes.split(50_000) == cores
        monkeypatch.setattr(module, "PARALLEL_FROM", 10)
        assert engine.passes.split(10) == cores
        stop = threading.Event()
        other = threading.Thread(target=stop.wait)  # a PostgreSQL pool runs threads
        other.start()
        try:
            assert engine.passes.split(10) == cores  # the child touches none of them
        finally:
            stop.set()
            other.join()
        monkeypatch.setattr(os, "getloadavg", lambda: (1.6, 0.5, 0.5))  # two cores busy
        assert engine.passes.split(10) == 1
        monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))  # overloaded
        assert engine.passes.split(10) == 1
        monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 0.5, 0.5))  # one core busy
        assert engine.passes.split(10) == 2
    with Engine(file.model_copy(update={"rebuild_processes": 3})) as engine:
        assert engine.passes.split(1) == 3  # asked for, whatever the load
    with Engine.in_memory() as engine:
        assert engine.passes.split(10**6) == 1  # a child cannot read this memory
