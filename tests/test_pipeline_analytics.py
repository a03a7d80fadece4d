"""Pipeline analytics by hand: time in stage, cycle, win rates, velocity, forecast, stale
deals, and the waterfall between two dates; every expectation computed in the comments."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from dealengine import Engine


def at(day: int) -> str:
    return f"2026-04-{day:02d}T10:00:00Z"


def moment(day: int) -> datetime:
    return datetime(2026, 4, day, 10, tzinfo=UTC)


def open_deal(
    engine: Engine, deal: str, day: int, amount: str, owner: str, close: str | None
) -> None:
    lead = f"L-{deal}"
    engine.record("site_visited", lead, "2026-03-01T10:00:00Z", channel="web")
    engine.record("lead_qualified", lead, "2026-03-02T10:00:00Z", by="sdr")
    fields: dict[str, Any] = {"lead_id": lead, "amount": amount, "owner": owner}
    if close:
        fields["expected_close_on"] = close
    engine.record("deal_opened", deal, at(day), **fields)


@pytest.fixture
def history(memory_engine: Engine) -> Engine:
    e = memory_engine
    # D-1: prospecting 2d, discovery 3d, proposal 2d, back to discovery 2d, proposal 5d,
    # negotiation 5d, won on the 20th at 1500: a 19-day cycle.
    open_deal(e, "D-1", 1, "1000", "ana", "2026-05-15")
    e.record("discovery_completed", "D-1", at(3))
    e.record("proposal_sent", "D-1", at(6), amount="1200")
    e.record("deal_stage_changed", "D-1", at(8), to_stage="discovery", reason="new stakeholder")
    e.record("proposal_sent", "D-1", at(10))
    e.record("negotiation_started", "D-1", at(15))
    e.record("deal_won", "D-1", at(20), amount="1500")
    # D-2: prospecting 2d, proposal 8d, lost on the 12th: a 10-day cycle.
    open_deal(e, "D-2", 2, "2000", "bruno", "2026-05-20")
    e.record("proposal_sent", "D-2", at(4))
    e.record("deal_lost", "D-2", at(12), reason="no budget")
    # D-3: prospecting 2d, then in negotiation from the 7th, no event since: stale after 14d.
    open_deal(e, "D-3", 5, "3000", "ana", "2026-06-01")
    e.record("negotiation_started", "D-3", at(7))
    # D-4: in prospecting since the 10th (30-day stale limit), no expected close date.
    open_deal(e, "D-4", 10, "500", "bruno", None)
    # D-5: prospecting 2d, lost on the 5th: a 2-day cycle.
    open_deal(e, "D-5", 3, "800", "chen", "2026-05-03")
    e.record("deal_lost", "D-5", at(5), reason="chose competitor")
    return e


def test_stage_totals_time_in_stage_and_ages(history: Engine) -> None:
    view = history.pipeline(as_of=moment(30))
    stages = {s.name: s for s in view.stages}
    assert (stages["prospecting"].open_deals, stages["prospecting"].amount) == (1, Decimal(500))
    assert stages["prospecting"].weighted_amount == Decimal("50.0")
    # every deal left prospecting after 2 days; D-4 has been there 20 days
    assert (stages["prospecting"].median_days_in_stage, stages["prospecting"].mean_age_days) == (
        2.0,
        20.0,
    )
    # D-1 spent 3 + 2 = 5 days in discovery, 2 + 5 = 7 in proposal; D-2 8 in proposal
    assert stages["discovery"].median_days_in_stage == 5.0
    assert (stages["discovery"].open_deals, stages["discovery"].mean_age_days) == (0, None)
    assert stages["proposal"].median_days_in_stage == 7.5
    assert stages["negotiation"].median_days_in_stage == 5.0
    assert stages["negotiation"].mean_age_days == 23.0
    assert stages["negotiation"].weighted_amount == Decimal("2400.0")


def test_cycle_win_rates_size_velocity_and_lost_reasons(history: Engine) -> None:
    view = history.pipeline(as_of=moment(30))
    assert (view.won.deals, view.won.amount, view.lost.deals, view.lost.amount) == (
        1,
        Decimal(1500),
        2,
        Decimal(2800),
    )
    assert view.win_rate == pytest.approx(1 / 3)
    assert view.win_rate_by_amount == pytest.approx(1500 / 4300)
    assert view.average_deal_size == Decimal(1500)
    assert (view.cycle["won"].median_days, view.cycle["lost"].median_days) == (19.0, 6.0)
    assert view.cycle["lost"].mean_days == 6.0
    # 2 open deals x 1/3 x 1500 / 19 days
    assert float(view.velocity_per_day or 0) == pytest.approx(2 * (1 / 3) * 1500 / 19)
    assert view.lost_reasons == {"no budget": 1, "chose competitor": 1}
    assert {o: b.win_rate for o, b in view.by_owner.items()} == {
        "ana": 1.0,
        "bruno": 0.0,
        "chen": 0.0,
    }


def test_forecast_categories_close_months_and_stale_deals(history: Engine) -> None:
    view = history.pipeline(as_of=moment(30))
    forecast = {c: (f.deals, f.amount, f.weighted_amount) for c, f in view.forecast.items()}
    assert forecast == {
        "pipeline": (1, Decimal(500), Decimal(50)),
        "best_case": (0, Decimal(0), Decimal(0)),  # a category with no deals
        "commit": (1, Decimal(3000), Decimal(2400)),
        "closed": (1, Decimal(1500), Decimal(1500)),
        "omitted": (2, Decimal(2800), Decimal(0)),
    }
    months = {m: (f.deals, f.amount) for m, f in view.forecast_by_close_month.items()}
    assert months == {"2026-06": (1, Decimal(3000)), "none": (1, Decimal(500))}
    assert [(s.deal_id, s.days_without_event, s.limit_days) for s in view.stale] == [
        ("D-3", 23.0, 14.0)
    ]
    assert history.pipeline(as_of=moment(20)).stale == []  # D-3 idle 13 days on the 20th


def test_a_deal_returning_to_a_stage_keeps_latest_and_cumulative_time(history: Engine) -> None:
    times = {d.deal_id: d for d in history.stage_times(as_of=moment(30))}
    d1 = {s.stage: (s.entries, s.latest_days, s.cumulative_days) for s in times["D-1"].by_stage}
    assert d1 == {
        "prospecting": (1, 2.0, 2.0),
        "discovery": (2, 2.0, 5.0),
        "proposal": (2, 5.0, 7.0),
        "negotiation": (1, 5.0, 5.0),
        "closed_won": (1, 10.0, 10.0),
    }
    stays = [
        (s.stage, s.entered_at.day, s.left_at.day if s.left_at else None)
        for s in times["D-1"].stays
    ]
    assert stays[:4] == [
        ("prospecting", 1, 3),
        ("discovery", 3, 6),
        ("proposal", 6, 8),
        ("discovery", 8, 10),
    ]


def test_the_past_pipeline_has_no_horizon(history: Engine) -> None:
    view = history.pipeline(as_of=moment(9))
    stages = {s.name: (s.open_deals, s.amount) for s in view.stages}
    # on the 9th: D-1 back in discovery at 1200, D-2 in proposal, D-3 in negotiation; D-5 lost
    assert stages == {
        "prospecting": (0, 0),
        "discovery": (1, Decimal(1200)),
        "proposal": (1, Decimal(2000)),
        "negotiation": (1, Decimal(3000)),
    }
    assert (view.won.deals, view.lost.deals) == (0, 1)


def test_changes_between_two_dates_add_up(history: Engine) -> None:
    w = history.pipeline_changes(moment(4), moment(30))
    # open on the 4th: D-1 1000, D-2 2000, D-5 800; new: D-3 3000, D-4 500;
    # won: D-1 at the 1500 it closed with, the 500 it grew by after the 4th under amount up;
    # lost: D-2 2000 and D-5 800; open at the end: 3500
    assert (w.open_at_start.deals, w.open_at_start.amount) == (3, Decimal(3800))
    assert (w.new.deals, w.new.amount) == (2, Decimal(3500))
    assert (w.won.deals, w.won.amount, w.lost.deals, w.lost.amount) == (
        1,
        Decimal(1500),
        2,
        Decimal(2800),
    )
    assert (w.amount_up.deals, w.amount_up.amount, w.amount_down.amount) == (1, 500, 0)
    assert (w.open_at_end.deals, w.open_at_end.amount) == (2, Decimal(3500))
    short = history.pipeline_changes(moment(4), moment(9))
    # D-1 went up 200 (proposal at 1200) and is back in discovery: not advanced; D-3 new
    assert (short.amount_up.deals, short.amount_up.amount) == (1, Decimal(200))
    assert (short.new.amount, short.lost.amount, short.open_at_end.amount) == (
        Decimal(3000),
        Decimal(800),
        Decimal(6200),
    )
    for move in (w, short):
        assert (
            move.open_at_start.amount
            + move.new.amount
            + move.reopened.amount
            + move.amount_up.amount
            - move.amount_down.amount
            - move.won.amount
            - move.lost.amount
        ) == move.open_at_end.amount


def test_advanced_moved_back_and_reopened(memory_engine: Engine) -> None:
    open_deal(memory_engine, "D-1", 1, "100", "ana", None)
    open_deal(memory_engine, "D-2", 1, "100", "ana", None)
    memory_engine.record("negotiation_started", "D-1", at(5))
    memory_engine.record("deal_lost", "D-2", at(2), reason="timing")
    memory_engine.record("deal_reopened", "D-2", at(6), reason="budget")
    memory_engine.record("deal_stage_changed", "D-1", at(7), to_stage="proposal", reason="x")
    w = memory_engine.pipeline_changes(moment(3), moment(6))
    assert (w.advanced.deals, w.reopened.deals, w.reopened.amount) == (1, 1, Decimal(100))
    back = memory_engine.pipeline_changes(moment(6), moment(8))
    assert back.moved_back.deals == 1 and back.advanced.deals == 0


def test_several_pipelines_each_with_its_own_stages_and_reports(memory_engine: Engine) -> None:
    e = memory_engine
    open_deal(e, "D-1", 1, "1000", "ana", None)  # new business, the default pipeline
    e.record("deal_opened", "R-1", at(2), amount="400", owner="bruno", pipeline="renewals")
    e.record("deal_opened", "R-2", at(2), amount="600", owner="bruno", pipeline="renewals")
    e.record("negotiation_started", "R-1", at(3))
    e.record("deal_won", "R-1", at(4))
    e.record("deal_lost", "R-2", at(5), reason="churned to competitor")
    assert (e.deal("R-1").pipeline, e.deal("R-1").stage) == ("renewals", "renewed")
    renewals = e.pipeline(as_of=moment(30), pipeline_name="renewals")
    assert [s.name for s in renewals.stages] == ["renewal_due", "in_negotiation"]
    assert (renewals.won.deals, renewals.won.amount, renewals.lost.deals) == (1, Decimal(400), 1)
    assert renewals.lost_reasons == {"churned to competitor": 1}
    business = e.pipeline(as_of=moment(30))
    assert (business.name, sum(s.open_deals for s in business.stages), business.won.deals) == (
        "new_business",
        1,
        0,
    )
    with pytest.raises(Exception, match="unknown pipeline 'upsell'"):
        e.pipeline(pipeline_name="upsell")
    from dealengine import InvalidEvent

    with pytest.raises(InvalidEvent, match="field 'pipeline': unknown pipeline 'upsell'"):
        e.record("deal_opened", "U-1", at(6), amount="1", owner="x", pipeline="upsell")
    # a renewal has its own rules: in_negotiation cannot go back to renewal_due without a reason
    e.record("deal_opened", "R-3", at(6), amount="100", owner="x", pipeline="renewals")
    e.record("negotiation_started", "R-3", at(7))
    e.record("deal_stage_changed", "R-3", at(8), to_stage="renewal_due", reason="customer paused")
    assert e.deal("R-3").stage == "renewal_due"
