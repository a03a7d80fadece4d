"""What-if scenarios (dealengine.whatif): each kind of override, filter, transform and
hypothetical event, checked by hand on a small history; the same fold as the views; clear
errors naming file, key and reason."""

from __future__ import annotations

import json
import re
import traceback
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dealengine import Engine, IllegalTransition, InvalidDefinition, UnknownAggregate
from dealengine.domain.errors import DealEngineError, InvalidEvent
from dealengine.whatif import Scenario, ScenarioResult

# The history of tests/test_views.py, with a campaign: five leads, three deals (D-1 won,
# D-4 in proposal, D-5 lost). Every event at 12:00 UTC on the day given, May 2026.
HISTORY = [
    ("ad_viewed", "L-1", "01", {"channel": "paid_search", "campaign": "spring"}),
    ("newsletter_signed_up", "L-1", "02", {}),
    ("demo_requested", "L-1", "03", {}),
    ("lead_qualified", "L-1", "04", {"by": "sdr"}),
    ("deal_opened", "D-1", "05", {"lead_id": "L-1", "amount": "1000", "owner": "ana"}),
    ("deal_won", "D-1", "06", {"amount": "1200"}),
    ("site_visited", "L-2", "01", {"channel": "organic_search"}),
    ("demo_requested", "L-2", "02", {}),
    ("ad_viewed", "L-3", "01", {"channel": "social", "campaign": "summer"}),
    ("site_visited", "L-4", "01", {"channel": "referral"}),
    ("lead_qualified", "L-4", "02", {"by": "sdr"}),
    ("deal_opened", "D-4", "03", {"lead_id": "L-4", "amount": "500", "owner": "bruno"}),
    ("proposal_sent", "D-4", "04", {"amount": "800"}),
    ("site_visited", "L-5", "01", {"channel": "email"}),
    ("ad_viewed", "L-5", "09", {"channel": "display"}),
    ("lead_qualified", "L-5", "02", {"by": "sdr"}),
    ("deal_opened", "D-5", "03", {"lead_id": "L-5", "amount": "300", "owner": "ana"}),
    ("deal_lost", "D-5", "04", {"reason": "timing"}),
]
BASELINE_STEPS = [5, 4, 4, 4, 3, 3, 1]  # awareness ... won (reached: skipped steps count)


@pytest.fixture
def engine(memory_engine: Engine) -> Engine:
    for event_type, target, day, fields in HISTORY:
        memory_engine.record(event_type, target, f"2026-05-{day}T12:00:00Z", **fields)
    return memory_engine


def run(engine: Engine, **scenario: Any) -> ScenarioResult:
    result = engine.what_if({"name": "s", **scenario})
    assert steps(result.baseline.funnel) == BASELINE_STEPS  # the baseline never changes
    return result["s"]


def steps(funnel: Any) -> list[int]:
    return [s.leads for s in funnel.steps]


def stages(pipeline: Any) -> dict[str, tuple[int, str]]:
    """Open stages with deals, won, lost: (deals, amount, normalised: 800.00 is "800")."""
    found = {s.name: (s.open_deals, s.amount) for s in pipeline.stages if s.open_deals}
    found["won"] = (pipeline.won.deals, pipeline.won.amount)
    found["lost"] = (pipeline.lost.deals, pipeline.lost.amount)
    return {k: (n, f"{a:f}".rstrip("0").rstrip(".") if "." in f"{a:f}" else f"{a:f}")
            for k, (n, a) in found.items()}  # fmt: skip


BASELINE_STAGES = {"proposal": (1, "800"), "won": (1, "1200"), "lost": (1, "300")}


# --- the same fold -----------------------------------------------------------------------------


def test_an_empty_scenario_is_exactly_the_views(engine: Engine) -> None:
    funnel, pipeline = engine.views()
    result = engine.what_ifs([Scenario(name="nothing"), {"name": "no-op", "transform": {}}])
    assert result.baseline.funnel == funnel and result.baseline.pipeline == pipeline
    for name in ("nothing", "no-op"):
        assert result[name].funnel == funnel and result[name].pipeline == pipeline
        assert all(c.leads.change == 0 for c in result[name].diff.steps)
    assert stages(pipeline) == BASELINE_STAGES


def test_a_scenario_with_its_own_lane_but_no_change_is_exactly_the_views(engine: Engine) -> None:
    """Filters and transforms that change nothing go through the scenario's own stream (a
    separate fold of every event): the views must still be identical."""
    funnel, pipeline = engine.views()
    result = engine.what_ifs(
        [
            {"name": "times-one", "transform": {"scale_amounts": 1}},
            {"name": "all-dates", "filter": {"from": "2000-01-01", "to": "2100-12-31"}},
            {"name": "no-shift", "transform": {"shift": [{"stage": "proposal", "days": 0}]}},
        ]
    )
    for scenario in result.scenarios.values():
        assert scenario.funnel == funnel and scenario.pipeline == pipeline


def test_as_of_is_the_same_fold_as_the_views_as_of(engine: Engine) -> None:
    moment = "2026-05-03"
    r = engine.what_if({"name": "s", "as_of": moment})
    from dealengine.cli import moment as parse

    assert r["s"].funnel == engine.funnel(as_of=parse(moment))
    assert r["s"].pipeline == engine.pipeline(as_of=parse(moment))
    assert steps(r["s"].funnel) == [5, 4, 4, 4, 2, 2, 0]
    assert r.baseline.funnel == engine.funnel()  # the run's own as-of is unset
    both = engine.what_if({"name": "s"}, as_of=parse(moment))
    assert both.baseline.funnel == both["s"].funnel == r["s"].funnel


# --- overrides of the definitions ---------------------------------------------------------------


def test_step_mapping_a_demo_request_counts_as_qualified(engine: Engine) -> None:
    s = run(
        engine,
        funnel={
            "steps": [
                {"name": "awareness", "events": ["ad_viewed", "site_visited"]},
                {"name": "interest", "events": ["newsletter_signed_up", "content_downloaded"]},
                {"name": "consideration", "events": ["webinar_attended"]},
                {"name": "qualified", "events": ["demo_requested", "lead_qualified"]},
                {"name": "opportunity", "events": ["deal_opened"]},
                {"name": "won", "events": ["deal_won"]},
            ]
        },
    )
    assert steps(s.funnel) == [5, 4, 4, 4, 3, 1]  # L-2's demo request now qualifies it
    qualified = next(c for c in s.diff.steps if c.step == "qualified").leads
    assert (qualified.baseline, qualified.scenario, qualified.change) == (3, 4, 1)
    assert qualified.relative == pytest.approx(1 / 3)
    intent = next(c for c in s.diff.steps if c.step == "intent").leads
    assert (intent.baseline, intent.scenario, intent.change) == (4, None, None)


def test_counting_mode_and_window(engine: Engine) -> None:
    # ordered: L-1 went ad -> newsletter, then no webinar; the others stop at awareness
    assert steps(run(engine, funnel={"mode": "ordered"}).funnel) == [5, 1, 0, 0, 0, 0, 0]
    # L-1's signup came one day after its ad: outside a half-day window
    half = run(engine, funnel={"mode": "ordered", "conversion_window_days": 0.5})
    assert steps(half.funnel) == [5, 0, 0, 0, 0, 0, 0]
    assert half.funnel == engine.funnel(mode="ordered", conversion_window_days=0.5)


def test_a_step_changed_by_name(engine: Engine) -> None:
    s = run(engine, funnel={"mode": "ordered", "steps": {"interest": {"within_days": 0.5}}})
    assert steps(s.funnel) == [5, 0, 0, 0, 0, 0, 0]
    assert s.funnel.steps[1].name == "interest"


def test_probabilities_forecast_categories_and_stale_limits(engine: Engine) -> None:
    baseline = engine.pipeline()
    assert [d.deal_id for d in baseline.stale] == ["D-4"]  # idle since May 4, limit 21 days
    assert baseline.forecast["best_case"].deals == 1
    s = run(
        engine,
        pipelines={
            "new_business": {
                "stages": {
                    "proposal": {"probability": 0.25, "forecast": "commit", "stale_after_days": 60}
                }
            }
        },
    )
    proposal = next(st for st in s.pipeline.stages if st.name == "proposal")
    assert (proposal.probability, proposal.weighted_amount) == (0.25, Decimal("200.00"))
    assert s.pipeline.forecast["commit"].deals == 1 and s.pipeline.forecast["best_case"].deals == 0
    assert s.pipeline.stale == []
    change = next(c for c in s.diff.stages if c.stage == "proposal").weighted_amount
    assert (change.baseline, change.scenario, change.change) == (400, 200, -200)
    assert change.relative == -0.5
    assert s.funnel == engine.funnel()


# --- filters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_", "expected_steps", "expected_stages"),
    [
        (  # L-1 came from paid search: it and its won deal go
            {"except": {"channels": ["paid_search"]}},
            [4, 3, 3, 3, 2, 2, 0],
            {"proposal": (1, "800"), "won": (0, "0"), "lost": (1, "300")},
        ),
        (  # L-5's first touch was email (its later display ad does not count)
            {"only": {"channels": ["email"]}},
            [1, 1, 1, 1, 1, 1, 0],
            {"won": (0, "0"), "lost": (1, "300")},
        ),
        (  # leads without a campaign are `unknown`
            {"only": {"campaigns": ["spring"]}},
            [1, 1, 1, 1, 1, 1, 1],
            {"won": (1, "1200"), "lost": (0, "0")},
        ),
        (
            {"except": {"campaigns": ["unknown"]}},
            [2, 1, 1, 1, 1, 1, 1],
            {"won": (1, "1200"), "lost": (0, "0")},
        ),
        (  # bruno's deal D-4 goes: L-4 stays, at qualified
            {"only": {"owners": ["ana"]}},
            [5, 4, 4, 4, 3, 2, 1],
            {"won": (1, "1200"), "lost": (1, "300")},
        ),
        (
            {"except": {"pipelines": ["new_business"]}},
            [5, 4, 4, 4, 3, 0, 0],
            {"won": (0, "0"), "lost": (0, "0")},
        ),
        (  # only May 2-4: L-3 never entered; D-1 (opened on the 5th) never opened
            {"from": "2026-05-02", "to": "2026-05-04"},
            [4, 4, 4, 4, 3, 2, 0],
            {"proposal": (1, "800"), "won": (0, "0"), "lost": (1, "300")},
        ),
    ],
)
def test_filters(
    engine: Engine,
    filter_: dict[str, Any],
    expected_steps: list[int],
    expected_stages: dict[str, tuple[int, str]],
) -> None:
    s = run(engine, filter=filter_)
    assert steps(s.funnel) == expected_steps
    assert stages(s.pipeline) == expected_stages


def test_a_channel_filter_is_the_baseline_minus_that_channel(engine: Engine) -> None:
    s = run(engine, filter={"except": {"channels": ["referral", "email"]}})
    base = engine.funnel()
    minus = [
        total - base.by_channel["referral"].steps[k].leads - base.by_channel["email"].steps[k].leads
        for k, total in enumerate(BASELINE_STEPS)
    ]
    assert steps(s.funnel) == minus
    assert set(s.funnel.by_channel) == {"paid_search", "organic_search", "social"}


# --- transforms ----------------------------------------------------------------------------------


def test_drop_an_event_type(engine: Engine) -> None:
    s = run(engine, transform={"drop": ["demo_requested"]})
    assert steps(s.funnel) == [5, 3, 3, 3, 3, 3, 1]  # L-2 had only its demo request past step 1


def test_deals_stalled_longer_than_n_days_are_lost_then(engine: Engine) -> None:
    # 1.5 days: D-4 (proposal since May 4, 12:00) is lost on May 6, 00:00; D-1 and D-5 closed
    # in time
    s = run(engine, transform={"lost_after_days": 1.5})
    assert stages(s.pipeline) == {"won": (1, "1200"), "lost": (2, "1100")}
    assert s.pipeline.lost_reasons == {"timing": 1, "what-if: over 1.5 days in proposal": 1}
    assert s.funnel == engine.funnel()
    # half a day: every deal is lost at noon + 12 h, before its next event, which is left out:
    # D-1's win never happens, D-4 is lost at its opening amount
    s = run(engine, transform={"lost_after_days": 0.5})
    assert stages(s.pipeline) == {"won": (0, "0"), "lost": (3, "1800")}
    assert steps(s.funnel) == [5, 4, 4, 4, 3, 3, 0]
    assert s.pipeline.cycle["lost"].median_days == 0.5
    # per stage: only deals in proposal
    s = run(engine, transform={"lost_after_days": {"proposal": 1.5}})
    assert stages(s.pipeline) == {"won": (1, "1200"), "lost": (2, "1100")}


def test_scale_amounts(engine: Engine) -> None:
    s = run(engine, transform={"scale_amounts": 1.5})
    assert stages(s.pipeline) == {"proposal": (1, "1200"), "won": (1, "1800"), "lost": (1, "450")}
    won = next(c for c in s.diff.stages if c.stage == "won").amount
    assert (won.change, won.relative) == (600, 0.5)


def test_shift_a_stage_and_a_step(engine: Engine) -> None:
    # D-4's proposal 10 days later: as of May 10 it is still in prospecting, at 500
    s = run(engine, as_of="2026-05-10", transform={"shift": [{"stage": "proposal", "days": 10}]})
    assert stages(s.pipeline) == {"prospecting": (1, "500"), "won": (1, "1200"), "lost": (1, "300")}
    # the won step's events a month later: as of May 20, D-1 is still open and L-1 not won
    s = run(engine, as_of="2026-05-20", transform={"shift": [{"step": "won", "days": 30}]})
    assert steps(s.funnel) == [5, 4, 4, 4, 3, 3, 0]
    assert stages(s.pipeline)["prospecting"] == (1, "1000")
    # by event type: L-1's newsletter two days earlier, before its ad: in order, L-1 no longer
    # reaches interest
    s = run(engine, funnel={"mode": "ordered"}, transform={"shift": [
        {"events": ["newsletter_signed_up"], "days": -2}]})  # fmt: skip
    assert steps(s.funnel) == [5, 0, 0, 0, 0, 0, 0]


# --- hypothetical events -------------------------------------------------------------------------

NEW_DEAL = [
    {"type": "site_visited", "lead_id": "L-9", "occurred_at": "2026-05-10T09:00:00Z",
     "channel": "referral"},
    {"type": "lead_qualified", "lead_id": "L-9", "occurred_at": "2026-05-11T09:00:00Z", "by": "x"},
    {"type": "deal_opened", "deal_id": "D-9", "lead_id": "L-9",
     "occurred_at": "2026-05-12T09:00:00Z", "amount": "2000", "owner": "ana"},
    {"type": "deal_won", "deal_id": "D-9", "occurred_at": "2026-05-13T09:00:00Z",
     "amount": "2500"},
]  # fmt: skip


def test_hypothetical_events_only_in_their_scenario(engine: Engine) -> None:
    funnel, pipeline = engine.views()
    result = engine.what_ifs([{"name": "new", "events": NEW_DEAL}, {"name": "other"}])
    new = result["new"]
    assert steps(new.funnel) == [6, 5, 5, 5, 4, 4, 2]
    assert stages(new.pipeline)["won"] == (2, "3700")
    assert new.funnel.by_channel["referral"].steps[-1].leads == 1
    assert result.baseline.funnel == funnel and result.baseline.pipeline == pipeline
    assert result["other"].funnel == funnel and result["other"].pipeline == pipeline
    assert engine.views() == (funnel, pipeline)  # nothing was recorded
    with pytest.raises(UnknownAggregate):
        engine.lead("L-9")


def test_a_hypothetical_event_on_a_recorded_deal(engine: Engine) -> None:
    won = {"type": "deal_won", "deal_id": "D-4", "occurred_at": "2026-05-20T12:00:00Z"}
    s = run(engine, events=[won])
    assert stages(s.pipeline) == {"won": (2, "2000"), "lost": (1, "300")}  # at its 800


def test_hypothetical_events_follow_the_scenarios_own_rules(engine: Engine) -> None:
    proposal = {"type": "proposal_sent", "deal_id": "D-9", "occurred_at": "2026-05-13T09:00:00Z",
                "amount": "2000"}  # fmt: skip
    events = [*NEW_DEAL[:3], proposal]  # prospecting -> proposal skips discovery
    assert stages(run(engine, events=events).pipeline)["proposal"] == (2, "2800")
    with pytest.raises(IllegalTransition, match="skips discovery"):
        run(engine, events=events, pipelines={"new_business": {"moves": {"skip": False}}})


@pytest.mark.parametrize(
    ("event", "error", "reason"),
    [
        (
            {"type": "discovery_completed", "deal_id": "D-4"},
            IllegalTransition,
            "deal D-4 is in 'proposal': discovery_completed refused: a backward move",
        ),
        ({"type": "deal_won", "deal_id": "D-1"}, IllegalTransition, "the deal is closed"),
        (
            {"type": "lead_qualified", "lead_id": "L-404", "by": "x"},
            UnknownAggregate,
            "field 'lead_id': no such lead recorded",
        ),
        ({"type": "deal_won", "deal_id": "D-4", "amount": "-1"}, InvalidEvent, "amount"),
        ({"type": "deal_teleported", "deal_id": "D-4"}, InvalidEvent, "unknown event type"),
    ],
)
def test_an_illegal_hypothetical_event_names_file_and_line(
    engine: Engine, tmp_path: Path, event: dict[str, Any], error: type[Exception], reason: str
) -> None:
    path = tmp_path / "bad.toml"
    fields = "".join(f'{k} = "{v}"\n' for k, v in event.items())
    path.write_text(
        'question = "?"\n\n[[events]]\n' + NEW_EVENT + "\n[[events]]\n" + fields
        + 'occurred_at = "2026-05-20T12:00:00Z"\n'
    )  # fmt: skip
    with pytest.raises(error) as refused:
        engine.what_if(path)
    message = str(refused.value)
    assert message.startswith(f"{path}:9: events.1: "), message
    assert reason in message


NEW_EVENT = (
    'type = "site_visited"\nlead_id = "L-8"\noccurred_at = 2026-05-10T00:00:00Z\nchannel = "x"\n'
)


def test_hypothetical_events_from_a_jsonl_file(engine: Engine, tmp_path: Path) -> None:
    import orjson

    (tmp_path / "more.jsonl").write_bytes(b"\n".join(orjson.dumps(e) for e in NEW_DEAL) + b"\n")
    path = tmp_path / "more.toml"
    path.write_text('events_file = "more.jsonl"\n')
    s = engine.what_if(path)["more"]
    assert stages(s.pipeline)["won"] == (2, "3700")
    lines = [orjson.dumps(e) for e in NEW_DEAL]
    lines[1] = b'{"type": "lead_qualified", "lead_id": "L-9"'
    (tmp_path / "more.jsonl").write_bytes(b"\n".join(lines))
    where = re.escape(f"{tmp_path / 'more.jsonl'}:2: not valid JSON")
    with pytest.raises(InvalidEvent, match=f"^{where}"):
        engine.what_if(path)


SECRET = "s3cr3t-t0ken-value"  # in a file the scenario should not quote (nor read)
GOOD_LINE = {"type": "site_visited", "lead_id": "L-8", "occurred_at": "2026-05-10T00:00:00Z",
             "channel": "x"}  # fmt: skip


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"type": SECRET, "deal_id": "D-4"}, "field 'type': unknown event type"),
        ({"type": "deal_won", "deal_id": "D-4", "amount": SECRET},
         "deal_won: field 'amount': Input should be a valid decimal"),
        ({"type": "lead_qualified", "lead_id": SECRET, "by": "x"},
         "field 'lead_id': no such lead recorded"),
        ({"type": "deal_opened", "deal_id": "D-77", "amount": "1", "owner": "ana",
          "pipeline": SECRET}, "deal_opened: field 'pipeline': invalid value"),
        ({"type": "deal_won", "deal_id": [SECRET]}, "field 'deal_id': invalid value"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("inline", [True, False])
def test_a_bad_hypothetical_event_is_named_by_file_line_and_field_never_by_value(
    engine: Engine, tmp_path: Path, event: dict[str, Any], reason: str, inline: bool
) -> None:
    bad = {**event, "occurred_at": "2026-05-20T12:00:00Z"}
    path = tmp_path / "bad.toml"
    if inline:
        tables = "".join(
            "\n[[events]]\n" + "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in e.items())
            for e in (GOOD_LINE, bad)
        )
        path.write_text(f'question = "?"\n{tables}')
        where = f"{path}:9: events.1: "
    else:
        (tmp_path / "bad.jsonl").write_text(f"{json.dumps(GOOD_LINE)}\n{json.dumps(bad)}\n")
        path.write_text('events_file = "bad.jsonl"\n')
        where = f"{tmp_path / 'bad.jsonl'}:2: "
    with pytest.raises(DealEngineError) as refused:
        engine.what_if(path)
    assert str(refused.value).startswith(where + reason), str(refused.value)
    assert SECRET not in "".join(traceback.format_exception(refused.value))


@pytest.mark.parametrize(
    "events_file",
    ["../outside/secret.jsonl", "{outside}/secret.jsonl", "/etc/passwd", "link.jsonl"],
)
def test_a_scenario_reads_only_files_in_its_own_folder(
    engine: Engine, tmp_path: Path, events_file: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_text(json.dumps({"type": SECRET}) + "\n")
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "link.jsonl").symlink_to(outside / "secret.jsonl")
    path = folder / "peek.toml"
    path.write_text(f"events_file = {json.dumps(events_file.format(outside=outside))}\n")
    with pytest.raises(InvalidDefinition) as refused:
        engine.what_if(path)
    assert (refused.value.file, refused.value.key) == (str(path), "events_file")
    assert SECRET not in str(refused.value)


# --- invalid scenarios: one error naming file, key and reason ------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[filter]\nonyl = {channels = ['x']}\n", "filter.onyl", "Extra inputs"),
        ("[pipelines.new_business.stages.proposal]\nprobability = 1.5\n",
         "pipelines.new_business.stages.proposal.probability", "less than or equal"),
        ("[pipelines.new_business.stages.limbo]\nprobability = 0.5\n",
         "pipelines.new_business.stages.limbo", "no such name"),
        ("[pipelines.old_business]\ncurrency = 'EUR'\n", "pipelines.old_business", "no such name"),
        ("[pipelines.new_business.events]\nproposal_sent = 'limbo'\n",
         "pipelines.new_business.events.proposal_sent", "unknown stage 'limbo'"),
        ("[funnel]\nmode = 'sideways'\n", "funnel.mode", "Input should be"),
        ("[funnel.steps.qualified]\nevents = ['lead_qualified', 'demo_requested']\n",
         "funnel.steps.qualified", "also in step 'intent'"),
        ("[funnel.steps.qualified]\nwithin_days = -1\n", "funnel.steps.qualified.within_days",
         "greater than 0"),
        ("[transform]\ndrop = ['deal_teleported']\n", "transform.drop", "unknown event type"),
        ("[transform]\nscale_amounts = 0\n", "transform.scale_amounts", "greater than 0"),
        ("[transform.lost_after_days]\nlimbo = 3\n", "transform.lost_after_days.limbo",
         "not an open stage"),
        ("[[transform.shift]]\nstage = 'proposal'\nstep = 'won'\ndays = 1\n",
         "transform.shift.0.stage", "exactly one of"),
        ("[[transform.shift]]\nstep = 'limbo'\ndays = 1\n", "transform.shift.0.step",
         "unknown funnel step"),
        ("[filter]\nfrom = 2026-05-02\nto = 2026-05-01\n", "filter.to", "before `from`"),
        ("as_of = 'yesterday'\n", "as_of", "not a date or time"),
        ("[funnel]\nbreakdowns = []\n[filter.only]\ncampaigns = ['spring']\n",
         "filter.only.campaigns", "breakdowns"),
        ("[filter.except]\npipelines = ['old_business']\n", "filter.except.pipelines",
         "unknown pipeline"),
        ("[funnel\nmode = 'ordered'\n", "-", "not valid TOML"),
    ],
)  # fmt: skip
def test_an_invalid_scenario_names_file_key_and_reason(
    engine: Engine, tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InvalidDefinition) as bad:
        engine.what_if(path)
    assert (bad.value.file, bad.value.key) == (str(path), key), str(bad.value)
    assert reason in bad.value.reason
    assert str(bad.value) == f"{path}: {key}: {bad.value.reason}"


def test_a_missing_scenario_file_and_duplicate_names(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(InvalidDefinition, match="cannot read"):
        engine.what_if(tmp_path / "nowhere.toml")
    (tmp_path / "a.toml").write_text('name = "same"\n')
    (tmp_path / "b.toml").write_text('name = "same"\n')
    with pytest.raises(Exception, match="two scenarios are named 'same'"):
        engine.what_ifs([tmp_path / "a.toml", tmp_path / "b.toml"])


# --- sharing folds is safe: the fold key holds what `apply` reads --------------------------------


def test_folds_are_shared_only_when_they_build_the_same_state() -> None:
    from dealengine.demo import generate
    from dealengine.domain.lines import interaction_from
    from dealengine.projections.funnel import FunnelProjection
    from dealengine.projections.pipeline import PipelineProjection
    from dealengine.whatif.scenario import resolve

    def funnel_fold_key(d: Any) -> Any:
        return FunnelProjection(d).fold_key

    def pipeline_fold_key(d: Any, default: bool) -> Any:
        return PipelineProjection(d, default=default).fold_key

    with Engine.in_memory() as engine:
        engine.execute_batch([interaction_from(x, "t", "t") for x in generate(400, 3)])
        events = list(engine.events())

        def defs(**overrides: Any) -> Any:
            r = resolve(Scenario(**overrides), "<t>", Path(), engine.funnel_definition,
                        engine.pipelines, None)  # fmt: skip
            return r.funnel, r.pipelines.default

        def folded(fold: Any) -> Any:
            state = fold.initial()
            for event in events:
                fold.apply(state, event)
            return state

        base_funnel, base_pipeline = defs()
        same: list[dict[str, Any]] = [
            {"funnel": {"conversion_window_days": 7, "cohort": "week"}},
            {"funnel": {"steps": {"interest": {"within_days": 2}, "won": {"name": "closed"}}}},
            {"pipelines": {"new_business": {"stages": {"proposal": {
                "probability": 0.9, "forecast": "commit", "stale_after_days": 1}}}}},
            {"pipelines": {"new_business": {"moves": {"skip": False}}}},
            {"funnel": {"mode": "ordered"}},  # its state keeps the sequences besides
            {"funnel": {"mode": "strict", "conversion_window_days": 3}},
        ]  # fmt: skip
        other: list[dict[str, Any]] = [
            {"funnel": {"exclusions": ["lead_disqualified"]}},
            {"funnel": {"attribution": "last_touch"}},
            {"funnel": {"breakdowns": []}},
            {"funnel": {"steps": {"intent": {"events": ["demo_requested", "lead_disqualified"]}}}},
            {"pipelines": {"new_business": {"events": {"proposal_sent": "negotiation"}}}},
        ]
        for overrides in same + other:
            funnel, pipeline = defs(**overrides)
            f_same = funnel_fold_key(funnel) == funnel_fold_key(base_funnel)
            p_same = pipeline_fold_key(pipeline, True) == pipeline_fold_key(base_pipeline, True)
            assert (f_same and p_same) == (overrides in same), overrides
            if f_same:
                state = folded(FunnelProjection(funnel))
                assert bool(state.sequence) == (funnel.mode != "reached")
                state.sequence = {}  # what only the ordered modes keep
                assert state == folded(FunnelProjection(base_funnel))
            if p_same:
                assert folded(PipelineProjection(pipeline)) == folded(
                    PipelineProjection(base_pipeline)
                )


def test_every_definition_field_is_read_by_the_fold_or_by_the_reports_only() -> None:
    """A field added to a definition goes in its projection's FOLDED (the fold key: `apply`
    reads it) or in this list (the reports only; the test above checks a few of them)."""
    from dealengine.domain.definitions import (
        FunnelDefinition,
        FunnelStep,
        PipelineDefinition,
        Stage,
    )
    from dealengine.projections.funnel import FunnelProjection
    from dealengine.projections.pipeline import PipelineProjection

    reports_only = {
        FunnelDefinition: {"mode", "conversion_window_days", "cohort"},
        FunnelStep: {"name", "within_days"},
        PipelineDefinition: {"currency", "moves"},
        Stage: {"probability", "forecast", "stale_after_days"},
    }
    funnel, pipeline = FunnelProjection.FOLDED, PipelineProjection.FOLDED
    folded = {
        FunnelDefinition: set(funnel),
        FunnelStep: set(funnel["steps"]["__all__"]),
        PipelineDefinition: set(pipeline),
        Stage: set(pipeline["stages"]["__all__"]),
    }
    for model, fields in folded.items():
        assert not fields & reports_only[model], model
        assert set(model.model_fields) == fields | reports_only[model], model


def test_shared_folds_give_the_views_of_their_own_definitions(engine: Engine) -> None:
    r = engine.what_ifs(
        [
            {"name": "week", "funnel": {"cohort": "week", "conversion_window_days": 3}},
            {"name": "ordered", "funnel": {"mode": "ordered", "conversion_window_days": 3}},
        ]
    )
    assert r["week"].funnel == engine.funnel(cohort="week", conversion_window_days=3)
    assert r["ordered"].funnel == engine.funnel(mode="ordered", conversion_window_days=3)
    assert r.baseline.funnel == engine.funnel()  # from the state the ordered fold kept


def test_the_garbage_collector_is_back_on_after_a_run(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    from dealengine.projections.funnel import FunnelProjection

    engine.what_if({"name": "s", "funnel": {"mode": "ordered"}})
    assert gc.isenabled()

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a report failed")

    monkeypatch.setattr(FunnelProjection, "summarise_each", broken)
    with pytest.raises(RuntimeError):
        engine.what_if({"name": "s"})
    assert gc.isenabled()
