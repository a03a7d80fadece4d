"""Interactions a business declares (interactions.toml, or a pydantic model given to the Engine)
are recorded, validated, chained, read back, counted and what-iffed as the built-in ones are.

The model of these tests: a definitions folder declaring `trial_started` (on a lead: plan,
seats, a personal email) and `contract_signed` (on a deal: moves it to negotiation), a funnel
visit -> trial -> qualified -> opportunity -> won broken down by `plan`, and the shipped
pipelines. The history, and what it gives, by hand:

  L-1  site_visited, trial_started (pro, 5 seats), qualified, D-1 opened (10,000), D-1
       contract_signed, D-1 won                                  -> furthest step: won
  L-2  ad_viewed, trial_started (team), qualified, D-2 opened (4,000), D-2 proposal_sent,
       D-2 contract_signed                -> opportunity; D-2 open in negotiation
  L-3  site_visited; its trial_started line has seats "many": rejected      -> visit
  L-4  site_visited; trial_started (basic) from the CSV                     -> trial
  L-5  trial_started (pro) from the CSV, nothing else: it passed `visit`    -> trial

  funnel: visit 5, trial 4, qualified 2, opportunity 2, won 1; at `trial` by plan: pro 2
  (L-1, L-5), team 1, basic 1. new_business: negotiation 1 deal, 4,000, weighted 0.80 x
  4,000 = 3,200; won 1 deal, 10,000.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import orjson
import pytest

from dealengine import (
    DealEvent,
    Engine,
    IllegalTransition,
    InvalidDefinition,
    InvalidEvent,
    LeadEvent,
    Settings,
    UnknownEventType,
    ingest_jsonl,
    load_funnel,
    load_interactions,
)
from dealengine.audit.report import build_report
from dealengine.domain.chain import topic_of
from dealengine.domain.personal import personal_fields
from dealengine.domain.values import Text
from dealengine.ingest.mapping import ingest_csv, load_mapping
from dealengine.subscriptions.webhooks import load_webhooks

INTERACTIONS = """
[[interactions]]
name = "trial_started"
on = "lead"
fields = { plan = "text", seats = "integer", email = { type = "text", personal = true } }

[[interactions]]
name = "contract_signed"
on = "deal"
stage = "negotiation"
fields = { signed_by = "text" }
"""
FUNNEL = """
breakdowns = ["plan"]
[[steps]]
name = "visit"
events = ["site_visited", "ad_viewed"]
[[steps]]
name = "trial"
events = ["trial_started"]
[[steps]]
name = "qualified"
events = ["lead_qualified"]
[[steps]]
name = "opportunity"
events = ["deal_opened"]
[[steps]]
name = "won"
events = ["deal_won"]
"""
LINES = [
    {"type": "site_visited", "lead_id": "L-1", "occurred_at": "2026-03-01T09:00:00Z", "channel": "organic_search", "id": "c-1"},
    {"type": "trial_started", "lead_id": "L-1", "occurred_at": "2026-03-02T09:00:00Z", "plan": "pro", "seats": 5, "email": "ana@example.com", "id": "c-2"},
    {"type": "lead_qualified", "lead_id": "L-1", "occurred_at": "2026-03-03T09:00:00Z", "by": "sdr-1", "id": "c-3"},
    {"type": "deal_opened", "deal_id": "D-1", "lead_id": "L-1", "occurred_at": "2026-03-04T09:00:00Z", "amount": "10000", "owner": "ana", "id": "c-4"},
    {"type": "contract_signed", "deal_id": "D-1", "occurred_at": "2026-03-05T09:00:00Z", "signed_by": "cfo", "id": "c-5"},
    {"type": "deal_won", "deal_id": "D-1", "occurred_at": "2026-03-06T09:00:00Z", "amount": "10000", "id": "c-6"},
    {"type": "ad_viewed", "lead_id": "L-2", "occurred_at": "2026-03-01T09:00:00Z", "channel": "paid_search", "id": "c-7"},
    {"type": "trial_started", "lead_id": "L-2", "occurred_at": "2026-03-03T09:00:00Z", "plan": "team", "seats": "2", "id": "c-8"},
    {"type": "lead_qualified", "lead_id": "L-2", "occurred_at": "2026-03-04T09:00:00Z", "by": "sdr-2", "id": "c-9"},
    {"type": "deal_opened", "deal_id": "D-2", "lead_id": "L-2", "occurred_at": "2026-03-05T09:00:00Z", "amount": "4000", "owner": "bo", "id": "c-10"},
    {"type": "proposal_sent", "deal_id": "D-2", "occurred_at": "2026-03-06T09:00:00Z", "id": "c-11"},
    {"type": "contract_signed", "deal_id": "D-2", "occurred_at": "2026-03-07T09:00:00Z", "id": "c-12"},
    {"type": "site_visited", "lead_id": "L-3", "occurred_at": "2026-03-02T09:00:00Z", "channel": "referral", "id": "c-13"},
    {"type": "trial_started", "lead_id": "L-3", "occurred_at": "2026-03-03T09:00:00Z", "seats": "many", "id": "c-14"},
    {"type": "site_visited", "lead_id": "L-4", "occurred_at": "2026-03-02T09:00:00Z", "channel": "referral", "id": "c-15"},
    {"type": "trial_started", "lead_id": "L-1", "occurred_at": "2026-03-02T09:00:00Z", "plan": "pro", "seats": 5, "id": "c-2"},
]  # fmt: skip
CSV = "lead,started,plan,seats\nL-5,2026-03-08,pro,3\nL-4,2026-03-09,basic,1\nL-6,2026-03-09,pro,lots\n"
MAPPING = """
[[events]]
type = "trial_started"
lead_id = "{lead}"
occurred_at = { column = "started", format = "%Y-%m-%d" }
id = "trial-{lead}"
fields.plan = { column = "plan" }
fields.seats = { column = "seats" }
"""
FUNNEL_BY_HAND = [("visit", 5), ("trial", 4), ("qualified", 2), ("opportunity", 2), ("won", 1)]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "interactions.toml").write_text(INTERACTIONS)
    (folder / "funnel.toml").write_text(FUNNEL)
    return folder


def open_engine(folder: Path, db: Path) -> Engine:
    interactions = load_interactions(folder / "interactions.toml")
    funnel = load_funnel(folder / "funnel.toml", context=interactions.context)
    settings = Settings(db=str(db), database_url=None)
    return Engine(settings, interactions=interactions, funnel=funnel)


@pytest.fixture
def engine(model: Path, tmp_path: Path) -> Iterator[Engine]:
    """The history above, ingested from a JSONL file and a CSV file."""
    jsonl = tmp_path / "history.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in LINES))
    csv = tmp_path / "trials.csv"
    csv.write_text(CSV)
    (tmp_path / "trials.toml").write_text(MAPPING)
    with open_engine(model, tmp_path / "store.db") as engine:
        report = ingest_jsonl(engine, jsonl, actor="test")
        assert (report.recorded, report.duplicates) == (14, 1)
        assert [(r.line, r.reason) for r in report.rejected] == [
            (14, "trial_started: field 'seats': Input should be a valid integer, "
                 "unable to parse string as an integer (got 'many')"),
        ]  # fmt: skip
        mapping = load_mapping(tmp_path / "trials.toml", engine.interactions.context)
        rows = ingest_csv(engine, csv, mapping, actor="test")
        assert rows.recorded == 2
        assert [(r.line, r.reason.split(": ", 1)[1]) for r in rows.rejected] == [
            (4, "field 'seats': Input should be a valid integer, unable to parse string as an "
                "integer (got 'lots')"),
        ]  # fmt: skip
        yield engine


def test_declared_interactions_count_in_the_funnel_and_move_deals(engine: Engine) -> None:
    funnel, pipeline = engine.views()
    assert [(s.name, s.leads) for s in funnel.steps] == FUNNEL_BY_HAND
    at_trial = {plan: b.steps[1].leads for plan, b in funnel.breakdowns["plan"].items()}
    assert at_trial == {"pro": 2, "team": 1, "basic": 1, "unknown": 0}
    stages = {s.name: s for s in pipeline.stages}
    negotiation = stages["negotiation"]
    assert (negotiation.open_deals, negotiation.amount) == (1, Decimal(4000))
    assert negotiation.weighted_amount == Decimal("3200.00")
    assert stages["proposal"].open_deals == 0
    assert pipeline.average_deal_size == Decimal(10000)
    live, _ = engine.live_funnel()
    assert [(s.name, s.leads) for s in live.steps] == FUNNEL_BY_HAND
    assert engine.live_pipeline()[0].stages[3].open_deals == 1


def test_history_audit_and_verify_show_declared_interactions(engine: Engine) -> None:
    assert engine.deal("D-2").stage == "negotiation"
    history = engine.history("L-1")
    trial = history[1]
    assert trial.event_type == "trial_started"
    assert trial.payload() == {"plan": "pro", "seats": 5, "email": "ana@example.com"}
    assert trial.idempotency_key == "c-2" and trial.prev_hash == history[0].chain_hash()
    timeline = engine.timeline("D-2")
    assert [(e.event.event_type, e.after.stage) for e in timeline] == [  # type: ignore[union-attr]
        ("deal_opened", "prospecting"), ("proposal_sent", "proposal"),
        ("contract_signed", "negotiation"),
    ]  # fmt: skip
    report = build_report(engine, "D-2")
    assert [row["type"] for row in report.timeline][-1] == "contract_signed"
    assert [(s.stage, s.left_at is None) for s in report.stage_durations][-1] == (
        "negotiation", True,
    )  # fmt: skip
    # D-2: opened, proposal, signed; L-2: ad, trial, qualified, converted
    assert report.integrity.intact and report.integrity.events == 3 + 4
    assert engine.verify().ok


def test_what_if_drops_and_adds_declared_interactions(engine: Engine) -> None:
    result = engine.what_ifs(
        [
            # L-5 had only its trial: gone; L-4 back at visit
            {"name": "no-trials", "transform": {"drop": ["trial_started"]}},
            # D-2 stays in proposal
            {"name": "unsigned", "transform": {"drop": ["contract_signed"]}},
            # D-2 left proposal a day after it entered: only its stay in negotiation counts
            {"name": "lost-in-proposal", "transform": {"lost_after_days": {"proposal": 5}}},
            {"name": "lost-in-negotiation", "transform": {"lost_after_days": {"negotiation": 2}}},
            {"name": "one-more-trial", "events": [
                {"type": "trial_started", "lead_id": "L-3", "plan": "pro",
                 "occurred_at": "2026-03-04T09:00:00Z"},
            ]},
        ]
    )  # fmt: skip
    assert [(s.name, s.leads) for s in result.baseline.funnel.steps] == FUNNEL_BY_HAND
    no_trials = result["no-trials"].funnel.steps
    assert [s.leads for s in no_trials] == [4, 2, 2, 2, 1]
    unsigned = {s.name: s.open_deals for s in result["unsigned"].pipeline.stages}
    assert (unsigned["proposal"], unsigned["negotiation"]) == (1, 0)
    kept = result["lost-in-proposal"].pipeline
    assert {s.name: s.open_deals for s in kept.stages}["negotiation"] == 1
    assert kept.lost_reasons == {}
    lost = result["lost-in-negotiation"].pipeline
    assert {s.name: s.open_deals for s in lost.stages}["negotiation"] == 0
    assert lost.lost_reasons == {"what-if: over 2 days in negotiation": 1}
    more = result["one-more-trial"].funnel
    assert [s.leads for s in more.steps] == [5, 5, 2, 2, 1]
    assert more.breakdowns["plan"]["pro"].steps[1].leads == 3


def test_the_stage_rules_decide_a_declared_stage_move(engine: Engine) -> None:
    with pytest.raises(IllegalTransition, match="deal D-1 is in 'closed_won': contract_signed"):
        engine.record("contract_signed", "D-1", "2026-03-09T09:00:00Z")
    engine.record("deal_opened", "D-3", "2026-03-09T09:00:00Z", amount="100", owner="ana",
                  pipeline="renewals")  # fmt: skip
    engine.record("contract_signed", "D-3", "2026-03-10T09:00:00Z")  # renewals: no negotiation
    assert engine.deal("D-3").stage == "renewal_due"


def test_a_recorded_declared_interaction_is_idempotent(engine: Engine) -> None:
    first = engine.record("trial_started", "L-4", "2026-03-10T09:00:00Z", idempotency_key="k")
    again = engine.record("trial_started", "L-4", "2026-03-10T09:00:00Z", idempotency_key="k")
    assert len(first.events) == 1 and again.duplicate


def test_a_declared_integer_is_one_json_readers_hold(engine: Engine) -> None:
    engine.record("trial_started", "L-8", "2026-03-10T09:00:00Z", seats=2**63 - 1)
    with pytest.raises(InvalidEvent, match="field 'seats': Input should be less than or equal"):
        engine.record("trial_started", "L-9", "2026-03-10T09:00:00Z", seats=2**63)


def test_the_registry_is_per_model(engine: Engine, tmp_path: Path) -> None:
    """Another engine in the same process, on the built-in catalogue only, knows nothing of
    the declared interactions: it refuses them, and says so of a store that holds them."""
    with (
        Engine.in_memory() as plain,
        pytest.raises(UnknownEventType, match="unknown event type 'trial_started'"),
    ):
        plain.record("trial_started", "L-9", "2026-03-01T09:00:00Z")
    with (
        Engine(Settings(db=str(tmp_path / "store.db"), database_url=None)) as other,
        pytest.raises(Exception, match=re.escape("dealengine.declared:trial_started")),
    ):
        other.history("L-1")
    assert engine.history("L-1")[1].event_type == "trial_started"  # still read here


def test_a_declared_field_may_be_personal(model: Path) -> None:
    trial = load_interactions(model / "interactions.toml")["trial_started"]
    assert personal_fields(trial) == frozenset({"email"})
    assert topic_of(trial) == "dealengine.declared:trial_started"
    # one class per declaration in a process: loading the folder again makes no new one
    assert load_interactions(model / "interactions.toml")["trial_started"] is trial


class MeetingBooked(LeadEvent):
    """An interaction a host registers as a pydantic model."""

    event_type: ClassVar[str] = "meeting_booked"
    with_whom: Text


def test_a_host_registers_a_pydantic_model_for_an_interaction() -> None:
    with Engine.in_memory(interactions=[MeetingBooked]) as engine:
        engine.record("meeting_booked", "L-1", "2026-03-01T09:00:00Z", with_whom="ana")
        [event] = engine.history("L-1")
        assert isinstance(event, MeetingBooked) and event.with_whom == "ana"
        assert engine.funnel(exclusions=["meeting_booked"]).steps[0].leads == 0
        with pytest.raises(Exception, match="field 'with_whom': missing"):
            engine.record("meeting_booked", "L-2", "2026-03-01T09:00:00Z")


def test_a_declared_name_may_not_clash_with_a_built_in(tmp_path: Path) -> None:
    path = tmp_path / "interactions.toml"
    path.write_text('[[interactions]]\nname = "ad_viewed"\non = "lead"\n')
    with pytest.raises(InvalidDefinition) as refused:
        load_interactions(path)
    assert str(refused.value) == (
        f"{path}: interactions.0.name: 'ad_viewed' is a built-in interaction"
    )
    with pytest.raises(InvalidDefinition, match="the API: ad_viewed: a built-in interaction"):

        class AdViewedAgain(LeadEvent):
            event_type: ClassVar[str] = "ad_viewed"

        Engine.in_memory(interactions=[AdViewedAgain])


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        ('fields = { seats = "number" }', "interactions.0.fields.seats"),
        ('fields = { id = "text" }', "interactions.0.fields.id: a name every interaction uses"),
        ('stage = "negotiation"', "interactions.0.stage: only a deal interaction moves a deal"),
        ("version = 2", "interactions.0.upcasts: version 2 needs the steps: v1_v2"),
        ('fields = { amount = "text" }', "interactions.0.fields.amount: an amount field must be"),
        ('fields = { "Seats" = "integer" }', "interactions.0.fields.Seats: a field name is a-z"),
    ],
)
def test_a_bad_declaration_names_the_file_and_the_key(
    tmp_path: Path, toml: str, where: str
) -> None:
    path = tmp_path / "interactions.toml"
    path.write_text(f'[[interactions]]\nname = "trial_started"\non = "lead"\n{toml}\n')
    with pytest.raises(InvalidDefinition, match=f"^{re.escape(str(path))}: {where}"):
        load_interactions(path)


def test_a_declared_stage_no_pipeline_has_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "interactions.toml"
    path.write_text('[[interactions]]\nname = "signed"\non = "deal"\nstage = "signing"\n')
    with pytest.raises(InvalidDefinition) as refused:
        Engine.in_memory(interactions=load_interactions(path))
    assert str(refused.value) == f"{path}: signed.stage: no pipeline has an open stage 'signing'"


def test_a_webhook_may_name_a_declared_interaction(model: Path, tmp_path: Path) -> None:
    path = tmp_path / "webhooks.toml"
    path.write_text(
        '[[webhooks]]\nurl = "https://crm.example.com/hook"\nevents = ["trial_started"]\n'
        'secret = "0123456789abcdef"\n'
    )
    interactions = load_interactions(model / "interactions.toml")
    [hook] = load_webhooks(path, interactions.context).webhooks
    assert hook.events == ["trial_started"]
    with pytest.raises(InvalidDefinition, match="unknown event 'trial_started'"):
        load_webhooks(path)  # the built-in interactions only


def test_the_cli_records_and_reports_declared_interactions(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commands on the folder's model. (The folder is patched in here, where `--definitions`
    / DEALENGINE_DEFINITIONS will select it.)"""
    from typer.testing import CliRunner

    from dealengine.cli import app
    from dealengine.domain import catalogue, definitions

    shutil.copyfile(definitions.definitions_dir() / "pipeline.toml", model / "pipeline.toml")
    monkeypatch.setattr(definitions, "definitions_dir", lambda: model)
    monkeypatch.setattr(catalogue, "definitions_dir", lambda: model)
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    jsonl, csv, mapping = tmp_path / "h.jsonl", tmp_path / "trials.csv", tmp_path / "trials.toml"
    jsonl.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in LINES))
    csv.write_text(CSV)
    mapping.write_text(MAPPING)
    scenario = tmp_path / "no-trials.toml"
    scenario.write_text('[transform]\ndrop = ["trial_started"]\n')
    cli = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = cli.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result.stdout

    run("ingest", str(jsonl), code=1)  # line 14 rejected
    run("ingest", str(csv), "--mapping", str(mapping), code=1)  # line 4 rejected
    funnel = orjson.loads(run("funnel", "--format", "json"))
    assert [(s["name"], s["leads"]) for s in funnel["steps"]] == FUNNEL_BY_HAND
    pipeline = orjson.loads(run("pipeline", "--format", "json"))
    assert [s["open_deals"] for s in pipeline["stages"]][:4] == [0, 0, 0, 1]
    history = orjson.loads(run("history", "L-1", "--format", "json"))
    assert history[1]["type"] == "trial_started" and history[1]["plan"] == "pro"
    audit = orjson.loads(run("audit", "D-2", "--format", "json"))
    assert audit["timeline"][-1]["type"] == "contract_signed"
    whatif = orjson.loads(run("whatif", str(scenario), "--format", "json"))
    steps = whatif["scenarios"]["no-trials"]["funnel"]["steps"]
    assert [s["leads"] for s in steps] == [4, 2, 2, 2, 1]
    run("verify")


class CallHeld(DealEvent):
    """A deal interaction that moves no stage: still the deal's latest activity."""

    event_type: ClassVar[str] = "call_held"


def test_a_declared_deal_interaction_keeps_a_deal_from_going_stale() -> None:
    """proposal's stale limit is 21 days: on 30 March, a deal whose proposal went out on
    2 March is stale, unless a call on 20 March (10 days before) was its latest activity."""
    now = datetime(2026, 3, 30, 12, tzinfo=UTC)
    with Engine.in_memory(interactions=[CallHeld], clock=lambda: now) as engine:
        for deal in ("D-1", "D-2"):
            engine.record("deal_opened", deal, "2026-03-01T09:00:00Z", amount="10", owner="ana")
            engine.record("proposal_sent", deal, "2026-03-02T09:00:00Z")
        engine.record("call_held", "D-2", "2026-03-20T09:00:00Z")
        assert engine.deal("D-2").stage == "proposal"
        assert [s.deal_id for s in engine.pipeline().stale] == ["D-1"]
