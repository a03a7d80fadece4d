"""Audit: bitemporal replays (as of / known at / version) with back-filled and voided events,
the void rule and its refusals, views that honour corrections, deterministic replay, the hash
chain on the write path, and the history / void / audit commands. Expectations are computed by
hand in the comments."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from dealengine import Engine, Settings
from dealengine.audit.states import canonical_json
from dealengine.cli import app
from dealengine.domain.chain import event_hash, split_own_hash, topic_of
from dealengine.domain.errors import IllegalTransition, UnknownEvent
from dealengine.projections.stream import StreamEvent, fold_rows
from tests.conftest import Clock


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def backfilled_deal(engine: Engine, clock: Clock) -> str:
    """Deal D-1, recorded over three months; returns the id of the back-filled event.

    recorded   occurred   event                      stage after   amount after
    03-01      03-01      deal_opened 10000          prospecting   10000
    03-10      03-10      discovery_completed        discovery     10000
    04-15      04-15      proposal_sent 12000        proposal      12000
    06-01      03-20      deal_amount_changed 11000  proposal      11000   (back-filled)
    """
    clock.now = at("2026-03-01T12:00:00")
    engine.record("deal_opened", "D-1", "2026-03-01T09:00:00Z", amount="10000", owner="ana")
    clock.now = at("2026-03-10T12:00:00")
    engine.record("discovery_completed", "D-1", "2026-03-10T09:00:00Z")
    clock.now = at("2026-04-15T12:00:00")
    engine.record("proposal_sent", "D-1", "2026-04-15T09:00:00Z", amount="12000")
    clock.now = at("2026-06-01T12:00:00")
    changed = engine.record(
        "deal_amount_changed", "D-1", "2026-03-20T09:00:00Z", amount="11000", reason="discount"
    )
    return str(changed.events[0].id)


def stage_amount(engine: Engine, **bounds: Any) -> tuple[str, Decimal]:
    deal = engine.deal("D-1", **bounds)
    return deal.stage, deal.amount


def test_as_of_and_known_at_with_a_backfilled_event(memory_engine: Engine, clock: Clock) -> None:
    backfilled_deal(memory_engine, clock)
    e = memory_engine
    assert stage_amount(e) == ("proposal", Decimal("11000"))
    # what had happened by the end of March, as known now: opened, discovery, the back-filled
    # change (occurred 03-20): discovery at 11000
    assert stage_amount(e, as_of="2026-03-31") == ("discovery", Decimal("11000"))
    # ... as known at the end of April: the change was not recorded yet
    assert stage_amount(e, as_of="2026-03-31", known_at="2026-04-30") == (
        "discovery",
        Decimal("10000"),
    )
    # what the system knew at the end of April: opened, discovery, proposal
    assert stage_amount(e, known_at="2026-04-30") == ("proposal", Decimal("12000"))
    # before it was opened, the deal did not exist
    with pytest.raises(Exception, match="unknown deal D-1 as of 2026-02-28"):
        e.deal("D-1", as_of="2026-02-28")
    assert stage_amount(e, version=2) == ("discovery", Decimal("10000"))
    assert e.deal("D-1", version=2).version == 2
    history = e.history("D-1", known_at="2026-04-30")
    assert [ev.event_type for ev in history] == [
        "deal_opened",
        "discovery_completed",
        "proposal_sent",
    ]
    assert [ev.event_type for ev in e.history("D-1", as_of="2026-03-31")] == [
        "deal_opened",
        "discovery_completed",
        "deal_amount_changed",
    ]


def test_a_voided_event_is_left_out_now_but_still_known_before_the_correction(
    memory_engine: Engine, clock: Clock
) -> None:
    e = memory_engine
    mistake = backfilled_deal(e, clock)
    clock.now = at("2026-06-10T12:00:00")
    void = e.void("D-1", mistake, reason="no discount was agreed", actor="maria").events[0]
    assert (void.event_type, void.originator_version, void.actor) == ("event_voided", 5, "maria")
    # now: the fold without v4: proposal at 12000 (version and head: the whole stream's)
    deal = e.deal("D-1")
    assert (deal.stage, deal.amount, deal.version, deal.head) == (
        "proposal",
        Decimal("12000"),
        5,
        void.chain_hash(),
    )
    # known before the correction: still the mistake
    assert stage_amount(e, known_at="2026-06-05") == ("proposal", Decimal("11000"))
    # as of March, as known now: the voided change never happened
    assert stage_amount(e, as_of="2026-03-31") == ("discovery", Decimal("10000"))
    # as of March, as known on 06-05: the change (not yet voided) counts
    assert stage_amount(e, as_of="2026-03-31", known_at="2026-06-05") == (
        "discovery",
        Decimal("11000"),
    )
    # the history shows both; the timeline's states say what was known after each event
    rows = [
        (t.event.originator_version, t.event.event_type, t.voided_by) for t in e.timeline("D-1")
    ]
    assert rows == [
        (1, "deal_opened", None),
        (2, "discovery_completed", None),
        (3, "proposal_sent", None),
        (4, "deal_amount_changed", 5),
        (5, "event_voided", None),
    ]
    amounts = [t.after.amount for t in e.timeline("D-1")]  # type: ignore[union-attr]
    assert amounts == [Decimal(a) for a in ("10000", "10000", "12000", "11000", "12000")]
    # a fresh engine (no cache) reads the same state
    assert e.deal("D-1") == deal
    # and the pipeline view honours the correction: one deal in proposal at 12000
    stages = {s.name: (s.open_deals, s.amount) for s in e.pipeline().stages}
    assert stages["proposal"] == (1, Decimal("12000"))
    stages = {s.name: (s.open_deals, s.amount) for s in e.views()[1].stages}
    assert stages["proposal"] == (1, Decimal("12000"))
    # ... also as of a date (the as-of fold): on 03-31 it was in discovery at 10000
    past = {s.name: (s.open_deals, s.amount) for s in e.pipeline(as_of=at("2026-03-31")).stages}
    assert past["discovery"] == (1, Decimal("10000"))


def test_voiding_a_touch_changes_the_funnel(memory_engine: Engine, clock: Clock) -> None:
    e = memory_engine
    ad = e.record("ad_viewed", "L-1", "2026-03-01T09:00:00Z", channel="paid_search")
    e.record("site_visited", "L-1", "2026-03-02T09:00:00Z", channel="organic")
    e.record("demo_requested", "L-1", "2026-03-03T09:00:00Z")
    assert set(e.funnel().by_channel) == {"paid_search"}  # first touch
    e.void("L-1", str(ad.events[0].id), reason="bot traffic")
    # the lead's first touch is now the visit
    assert set(e.funnel().by_channel) == {"organic"}
    assert e.funnel().leads == 1
    assert e.lead("L-1").version == 4 and e.lead("L-1").status == "open"


def test_voids_refused_and_idempotent(memory_engine: Engine, clock: Clock) -> None:
    e = memory_engine
    e.record("site_visited", "L-2", "2026-03-01T09:00:00Z", channel="organic")
    e.record("lead_qualified", "L-2", "2026-03-02T09:00:00Z", by="sdr")
    e.record("lead_disqualified", "L-2", "2026-03-03T09:00:00Z", reason="no budget")
    e.record("lead_qualified", "L-2", "2026-03-04T09:00:00Z", by="sdr")
    # without the disqualification, v4 would qualify a qualified lead
    with pytest.raises(IllegalTransition, match=r"v4 \(lead_qualified\) would be refused"):
        e.void("L-2", "v3", reason="oops")
    opened = e.record("deal_opened", "D-3", "2026-03-05T09:00:00Z", amount="5", owner="ana")
    e.record("deal_won", "D-3", "2026-03-06T09:00:00Z")
    e.record("deal_reopened", "D-3", "2026-03-07T09:00:00Z", reason="customer backed out")
    # without the win, the reopening would reopen an open deal
    with pytest.raises(IllegalTransition, match="only a closed deal can be reopened"):
        e.void("D-3", "v2", reason="oops")
    with pytest.raises(IllegalTransition, match="close a deal opened by mistake with deal_lost"):
        e.void("D-3", str(opened.events[0].id), reason="oops")
    with pytest.raises(UnknownEvent, match="deal D-3 has no event"):
        e.void("D-3", "00000000-0000-4000-8000-000000000000", reason="oops")
    # the reopening can be voided (the deal is won again); twice is refused
    e.void("D-3", "v3", reason="it stayed won", idempotency_key="fix-1")
    assert e.deal("D-3").stage == "closed_won"
    with pytest.raises(IllegalTransition, match="already voided by v4"):
        e.void("D-3", "v3", reason="again")
    with pytest.raises(IllegalTransition, match="a correction is not voided"):
        e.void("D-3", "v4", reason="undo")
    assert e.void("D-3", "v3", reason="again", idempotency_key="fix-1").duplicate
    assert len(e.history("D-3")) == 4


def test_a_voided_interaction_sent_again_is_still_a_duplicate(
    memory_engine: Engine, clock: Clock
) -> None:
    e = memory_engine
    e.record("site_visited", "L-1", "2026-03-01T09:00:00Z", channel="x", idempotency_key="k1")
    e.record("demo_requested", "L-1", "2026-03-02T09:00:00Z", idempotency_key="k2")
    e.void("L-1", "v2", reason="test lead")
    again = e.record("demo_requested", "L-1", "2026-03-02T09:00:00Z", idempotency_key="k2")
    assert again.duplicate  # re-ingesting a file does not bring the mistake back


def test_the_folds_never_see_voids_or_voided_events(memory_engine: Engine, clock: Clock) -> None:
    e = memory_engine
    e.record("site_visited", "L-1", "2026-03-01T09:00:00Z", channel="x")
    e.record("demo_requested", "L-1", "2026-03-02T09:00:00Z")
    e.void("L-1", "v2", reason="test")

    class Seen:
        def initial(self) -> list[str]:
            return []

        def apply(self, view: list[str], event: StreamEvent) -> None:
            view.append(event.type)

    rows = list(e.store.stream())
    assert fold_rows(rows, [Seen()]) == [["site_visited", "demo_requested", "event_voided"]]
    assert fold_rows(rows, [Seen()], e.store.voided_ids()) == [["site_visited"]]
    assert [ev.type for ev in e.events()] == ["site_visited"]


def test_replay_is_deterministic(settings: Settings, clock: Clock, tmp_path: Path) -> None:
    """The same events, copied into another store, replay to byte-identical canonical JSON."""
    with Engine(settings, clock=clock) as first:
        mistake = backfilled_deal(first, clock)
        first.void("D-1", mistake, reason="x")
        rows = first.store.recorder.select_streams(["deal:D-1"])
        states = [canonical_json(first.deal("D-1", version=v)) for v in range(1, 6)]
        march = canonical_json(first.deal("D-1", as_of="2026-03-31"))
    copy = Settings(db=str(tmp_path / "copy.db"), database_url=None)
    with Engine(copy) as second:
        second.store.recorder.insert_events(rows)
        assert [canonical_json(second.deal("D-1", version=v)) for v in range(1, 6)] == states
        assert canonical_json(second.deal("D-1", as_of="2026-03-31")) == march
        assert second.verify().ok
    assert states[-1].startswith(b'{"amount":"12000","closed_from":null,"currency":"USD"')


def test_every_event_carries_its_predecessors_hash_and_its_own(
    memory_engine: Engine, clock: Clock
) -> None:
    e = memory_engine
    e.record("ad_viewed", "L-1", "2026-03-01T09:00:00Z", channel="x")
    e.record("lead_qualified", "L-1", "2026-03-02T09:00:00Z", by="me")
    e.record("deal_opened", "D-1", "2026-03-03T09:00:00Z", lead_id="L-1", amount="1", owner="a")
    previous = None
    for stored in e.store.recorder.select_streams(["lead:L-1"]):
        data = orjson.loads(stored.state)
        assert data["prev_hash"] == previous and list(data)[-1] == "hash"  # written last
        body, own = split_own_hash(stored.state)
        assert body == stored.state.replace(b',"hash":"%s"' % data["hash"].encode(), b"")
        assert (
            own
            == data["hash"]
            == event_hash(stored.originator_id, stored.originator_version, stored.topic, body)
        )
        previous = own
    assert e.lead("L-1").head == previous
    [converted] = [ev for ev in e.history("L-1") if ev.event_type == "lead_converted"]
    assert converted.chain_hash() == previous
    assert topic_of(type(converted)) == "dealengine.domain.events:LeadConverted"


# --- the commands ------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    clock = Clock()
    with Engine(Settings(), clock=clock) as engine:
        backfilled_deal(engine, clock)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_history_flags_and_formats(cli: Callable[..., Any]) -> None:
    table = cli("history", "D-1")
    assert table.exit_code == 0, table.output
    assert "proposal 11000" in table.stdout and "deal_amount_changed" in table.stdout
    csv = cli("history", "D-1", "--known-at", "2026-04-30", "--format", "csv").stdout.splitlines()
    assert csv[0].startswith(
        "version,id,occurred_at,recorded_at,actor,source,type,fields,stage_after"
    )
    assert [line.split(",")[6] for line in csv[1:]] == [
        "deal_opened",
        "discovery_completed",
        "proposal_sent",
    ]
    rows = orjson.loads(cli("history", "D-1", "--as-of", "2026-03-31", "--format", "json").stdout)
    assert [(r["type"], r["stage_after"], r["amount_after"]) for r in rows] == [
        ("deal_opened", "prospecting", "10000"),
        ("discovery_completed", "discovery", "10000"),
        ("deal_amount_changed", "discovery", "11000"),
    ]
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    assert cli("history", "D-1", "--version", "1", "--format", "json").stdout.count('"type"') == 1
    bad = cli("history", "D-1", "--as-of", "March")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: as_of: not a date or time")


def test_void_and_audit_commands(cli: Callable[..., Any], tmp_path: Path) -> None:
    voided = cli("void", "D-1", "v4", "--reason", "no discount", "--actor", "maria")
    assert voided.exit_code == 0, voided.output
    refused = cli("void", "D-1", "v1", "--reason", "x")
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    assert "deal D-1 is in 'proposal': event_voided of v1 (deal_opened) refused" in refused.stderr
    table = cli("history", "D-1").stdout
    assert "voided by v5" in table and "proposal 12000" in table

    report = orjson.loads(cli("audit", "D-1", "--format", "json").stdout)
    assert report["state"]["amount"] == "12000" and report["integrity"]["intact"] is True
    assert [c["voided_version"] for c in report["corrections"]] == [4]
    assert [(s["stage"], s["days"]) for s in report["stage_durations"][:2]] == [
        ("prospecting", 9.0),  # 03-01 09:00 -> 03-10 09:00
        ("discovery", 36.0),  # 03-10 -> 04-15
    ]
    assert [(a["before"], a["after"]) for a in report["amount_changes"]] == [("10000", "12000")]
    assert {a["actor"]: a["events"] for a in report["actors"]} == {"api": 4, "maria": 1}

    out = tmp_path / "audit.html"
    written = cli("audit", "D-1", "--output", str(out))
    assert written.exit_code == 0, written.output
    html = out.read_text()
    assert html.startswith("<!doctype html>") and "<style>" in html
    assert not re.search(r"(src|href)=|https?://|<script|<link", html)  # self-contained
    assert "Audit of deal D-1" in html and "intact" in html and "no discount" in html
    csv = cli("audit", "D-1", "--format", "csv").stdout.splitlines()
    assert csv[0] == "section,version,occurred_at,recorded_at,actor,type,stage,amount,detail"
    assert {line.split(",")[0] for line in csv[1:]} == {
        "timeline",
        "stage",
        "amount",
        "actor",
        "correction",
        "integrity",
    }
    missing = cli("audit", "D-404")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: unknown lead or deal")
