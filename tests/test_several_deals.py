"""Several deals per lead (issue 16, item 4): a converted lead opens further deals (a renewal,
an upsell, in another pipeline too); the lead lists them; the funnel counts the lead once per
step (its first deal for `opportunity`, its earliest won deal for `won`); the pipeline counts
every deal. Every figure below is worked out by hand from the events. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dealengine import DealEngineError, Engine, FunnelDefinition, Settings
from dealengine.audit.report import build_report
from dealengine.subscriptions.notices import Notice

FUNNEL = FunnelDefinition.model_validate(
    {
        "steps": [
            {"name": "awareness", "events": ["site_visited"]},
            {"name": "qualified", "events": ["lead_qualified"]},
            {"name": "opportunity", "events": ["deal_opened"]},
            {"name": "won", "events": ["deal_won"]},
        ]
    }
)
HISTORY = [
    ("site_visited", "L-1", "2026-01-01", {"channel": "web"}),
    ("site_visited", "L-2", "2026-01-02", {"channel": "web"}),
    ("lead_qualified", "L-1", "2026-01-03", {"by": "sdr"}),
    # the first deal: new business, won
    ("deal_opened", "D-1", "2026-01-05", {"lead_id": "L-1", "amount": "1000", "owner": "ana"}),
    ("deal_won", "D-1", "2026-01-15", {}),
    # the renewal, in the renewals pipeline, won
    ("deal_opened", "D-2", "2026-06-01",
     {"lead_id": "L-1", "amount": "800", "owner": "bo", "pipeline": "renewals"}),
    ("deal_won", "D-2", "2026-06-10", {}),
    # the upsell, new business again, open at proposal
    ("deal_opened", "D-3", "2026-06-20", {"lead_id": "L-1", "amount": "500", "owner": "cy"}),
    ("proposal_sent", "D-3", "2026-06-25", {"amount": "600"}),
]  # fmt: skip


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    with Engine(settings, funnel=FUNNEL) as engine:
        for event_type, target, day, fields in HISTORY:
            engine.record(event_type, target, f"{day}T00:00:00Z", **fields)
        yield engine


def test_the_lead_lists_its_deals_and_keeps_its_first_conversion(engine: Engine) -> None:
    lead = engine.lead("L-1")
    assert (lead.status, lead.deal_id, lead.deals) == ("converted", "D-1", ("D-1", "D-2", "D-3"))
    assert [engine.deal(d).lead_id for d in lead.deals] == ["L-1"] * 3
    assert engine.deal("D-2").pipeline == "renewals"
    assert engine.verify().ok
    with pytest.raises(DealEngineError, match=r"its deals are D-1, D-2, D-3 \(audit D-1\)"):
        build_report(engine, "L-1")


@pytest.mark.parametrize("mode", ["reached", "ordered", "strict"])
def test_the_funnel_counts_the_lead_once_per_step(engine: Engine, mode: str) -> None:
    funnel = engine.funnel(mode=mode)
    # L-1 reached every step, L-2 only awareness: each lead once, whatever its deals
    assert [s.leads for s in funnel.steps] == [2, 1, 1, 1]
    days = {(t.from_step, t.to_step): t.mean_days for t in funnel.time_to_convert}
    assert days[("qualified", "opportunity")] == 2.0  # Jan 3 -> its first deal, Jan 5
    assert days[("opportunity", "won")] == 10.0  # Jan 5 -> its earliest won deal, Jan 15
    assert days[("awareness", "won")] == 14.0


def test_the_pipeline_counts_every_deal(engine: Engine) -> None:
    new_business = engine.pipeline()
    # D-1 won at 1000; D-3 open in proposal at 600, weighted 0.5 * 600 = 300
    assert (new_business.won.deals, new_business.won.amount) == (1, Decimal("1000"))
    proposal = next(s for s in new_business.stages if s.name == "proposal")
    assert (proposal.open_deals, proposal.amount) == (1, Decimal("600"))
    assert proposal.weighted_amount == Decimal("300")
    assert sum(s.open_deals for s in new_business.stages) == 1
    renewals = engine.pipeline(pipeline_name="renewals")
    assert (renewals.won.deals, renewals.won.amount) == (1, Decimal("800"))
    assert sum(s.open_deals for s in renewals.stages) == 0


def test_the_live_views_count_the_same(engine: Engine) -> None:
    funnel, _ = engine.live_funnel()
    assert [s.leads for s in funnel.steps] == [2, 1, 1, 1]
    pipeline, _ = engine.live_pipeline()
    assert (pipeline.won.deals, sum(s.open_deals for s in pipeline.stages)) == (1, 1)
    renewals, _ = engine.live_pipeline(pipeline_name="renewals")
    assert renewals.won.deals == 1


def test_a_what_if_without_the_first_deal_counts_the_lead_by_the_others(engine: Engine) -> None:
    """Without ana's deals (D-1), L-1 is still an opportunity (D-2, June 1) and won (D-2,
    June 10): once per step; new business keeps D-3 only."""
    result = engine.what_if({"name": "no-ana", "filter": {"except": {"owners": ["ana"]}}})
    scenario = result.scenarios["no-ana"]
    assert [s.leads for s in scenario.funnel.steps] == [2, 1, 1, 1]
    days = {(t.from_step, t.to_step): t.mean_days for t in scenario.funnel.time_to_convert}
    assert days[("qualified", "opportunity")] == 149.0  # Jan 3 -> Jun 1
    assert days[("opportunity", "won")] == 9.0  # Jun 1 -> Jun 10
    assert scenario.pipeline.won.deals == 0
    assert sum(s.open_deals for s in scenario.pipeline.stages) == 1
    assert [s.leads for s in result.baseline.funnel.steps] == [2, 1, 1, 1]


def test_split_over_processes_the_counts_are_the_same(engine: Engine) -> None:
    split = engine.settings.model_copy(update={"rebuild_processes": 3})
    with Engine(split, funnel=FUNNEL) as over_processes:
        assert over_processes.passes.split(100) == 3
        for mode in ("reached", "ordered"):
            assert over_processes.funnel(mode=mode) == engine.funnel(mode=mode)
        july = datetime(2026, 7, 1, tzinfo=UTC)  # ages measured at one moment
        assert over_processes.pipeline(as_of=july) == engine.pipeline(as_of=july)
        assert [s.leads for s in over_processes.funnel().steps] == [2, 1, 1, 1]


def test_a_subscriber_is_told_each_step_of_the_lead_once(engine: Engine) -> None:
    """`lead.step_reached` follows the funnel: opportunity at D-1's opening only, won at
    D-1's win only; the renewal's and the upsell's openings and D-2's win reach no step."""
    got: list[Notice] = []
    engine.subscribe("crm", got.append, run=False)
    engine.subscriptions.catch_up("crm")
    steps = [(n.step, n.aggregate_id) for n in got if n.type == "lead.step_reached"]
    assert steps == [
        ("awareness", "L-1"), ("awareness", "L-2"), ("qualified", "L-1"),
        ("opportunity", "D-1"), ("won", "D-1"),
    ]  # fmt: skip
    opened = [n.aggregate_id for n in got if n.type == "deal_opened"]
    assert opened == ["D-1", "D-2", "D-3"]
