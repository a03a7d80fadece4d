"""No input can break a store (issue 14): every way in refuses what the views could not survive,
one line at a time, naming file, line and field; and every view survives the extreme values the
boundary allows, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from eventsourcing.persistence import DataError
from typer.testing import CliRunner

from dealengine import Engine, InvalidFields, Settings
from dealengine.cli import app
from dealengine.domain.errors import DealEngineError, InvalidDefinition, InvalidEvent
from dealengine.ingest.jsonl import IngestReport, ingest_jsonl
from dealengine.ingest.mapping import ingest_csv, load_mapping
from dealengine.report import render_report

AT = "2026-03-01T09:00:00Z"


def write(path: Path, lines: list[dict[str, Any] | str]) -> Path:
    path.write_bytes(
        b"\n".join(x.encode() if isinstance(x, str) else orjson.dumps(x) for x in lines)
    )
    return path


def ingest(engine: Engine, tmp_path: Path, lines: list[dict[str, Any] | str]) -> IngestReport:
    return ingest_jsonl(engine, write(tmp_path / "in.jsonl", lines), actor="test")


def reasons(report: IngestReport) -> dict[int, str]:
    return {r.line: r.reason for r in report.rejected}


def touch(lead: str, **fields: Any) -> dict[str, Any]:
    return {"type": "ad_viewed", "lead_id": lead, "occurred_at": AT, "channel": "web", **fields}


def opening(deal: str, lead: str | None = None, **fields: Any) -> dict[str, Any]:
    line = {"type": "deal_opened", "deal_id": deal, "occurred_at": AT, "amount": "10", **fields}
    return line | {"owner": "ana"} | ({"lead_id": lead} if lead is not None else {})


def every_view(engine: Engine) -> None:
    """Every read a user can ask for; each must answer."""
    engine.views()
    engine.live_funnel()
    engine.live_pipeline()
    engine.funnel(mode="strict", cohort="week", breakdowns=["campaign", "page"])
    engine.pipeline()
    engine.stage_times()
    assert "<html" in render_report(engine)
    engine.what_if({"name": "s", "transform": {"scale_amounts": 1000}})


# --- 1. money ---------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["1e400", "100000000000000000000000000", 1e26])
def test_an_amount_past_the_limit_is_refused_naming_it(
    engine: Engine, tmp_path: Path, amount: object
) -> None:
    report = ingest(engine, tmp_path, [opening("D-1"), opening("D-2", amount=amount)])
    assert report.recorded == 1
    assert "in.jsonl" in report.file and list(reasons(report)) == [2]
    assert "field 'amount'" in reasons(report)[2] and "1000000000000000" in reasons(report)[2]
    every_view(engine)


def test_a_host_is_told_the_type_of_an_event_whose_fields_are_refused(
    memory_engine: Engine,
) -> None:
    with pytest.raises(InvalidFields) as refused:
        memory_engine.record(
            "deal_opened", "D-1", "2026-03-01T10:00:00Z", amount="abc", owner="ana"
        )
    assert refused.value.event_type == "deal_opened"
    assert str(refused.value) == (
        "deal_opened: field 'amount': Input should be a valid decimal (got 'abc')"
    )


def test_an_amount_with_more_than_four_decimals_is_refused(
    memory_engine: Engine, tmp_path: Path
) -> None:
    report = ingest(memory_engine, tmp_path, [opening("D-1", amount="0.00001")])
    assert "field 'amount'" in reasons(report)[1] and "4 decimal places" in reasons(report)[1]


def test_a_scenario_event_past_the_limit_fails_naming_it(
    memory_engine: Engine, tmp_path: Path
) -> None:
    write(tmp_path / "events.jsonl", [opening("D-9", amount="1e400")])
    (tmp_path / "file.toml").write_text('events_file = "events.jsonl"\n')
    inline = {"name": "inline", "events": [opening("D-9", amount="1e400")]}
    for scenario in (inline, tmp_path / "file.toml"):
        with pytest.raises(InvalidEvent, match="field 'amount'"):
            memory_engine.what_if(scenario)


# --- 2. control characters ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["channel", "campaign", "page"])
def test_a_nul_in_text_is_refused_and_the_views_still_answer(
    engine: Engine, tmp_path: Path, field: str
) -> None:
    line = {**touch("L-2"), "type": "site_visited" if field == "page" else "ad_viewed"}
    report = ingest(engine, tmp_path, [touch("L-1"), line | {field: "spring\u0000sale"}])
    assert report.recorded == 1 and f"field '{field}'" in reasons(report)[2]
    assert "control characters" in reasons(report)[2]
    every_view(engine)
    assert engine.verify().ok


def test_a_nul_in_a_csv_cell_is_refused_naming_its_line(engine: Engine, tmp_path: Path) -> None:
    rows = tmp_path / "leads.csv"
    rows.write_text("mql_id,first_contact_date,landing_page_id,origin\n"
                    "a,01-02-2018,p1,web\nb,01-02-2018,p2,we\x00b\nc,01-02-2018,p3,web\n")  # fmt: skip
    mapping = load_mapping(Path(__file__).parents[1] / "projections/mappings/olist-leads.toml")
    report = ingest_csv(engine, rows, mapping, actor="test")
    assert report.recorded == 2 and {r.line for r in report.rejected} == {3}
    assert "field 'channel'" in report.rejected[0].reason
    every_view(engine)


def test_a_newline_or_tab_in_free_text_is_refused(memory_engine: Engine, tmp_path: Path) -> None:
    report = ingest(
        memory_engine, tmp_path, [touch("L-1", campaign="a\tb"), touch("L-2", actor="x\ny")]
    )
    assert "field 'campaign'" in reasons(report)[1] and "field 'actor'" in reasons(report)[2]


# --- 3. ill-typed fields --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("type", ["ad_viewed"]), ("type", 7), ("lead_id", ["L-1"]), ("channel", {"a": 1}),
     ("occurred_at", [AT]), ("id", {}), ("actor", 5), ("campaign", True)],
)  # fmt: skip
def test_a_field_of_the_wrong_type_is_refused_alone(
    engine: Engine, tmp_path: Path, field: str, value: object
) -> None:
    report = ingest(engine, tmp_path, [touch("L-1"), touch("L-2") | {field: value}, touch("L-3")])
    assert report.recorded == 2 and list(reasons(report)) == [2]
    assert f"field '{field}'" in reasons(report)[2]


def test_ill_typed_deal_fields_are_refused_alone(memory_engine: Engine, tmp_path: Path) -> None:
    lines: list[dict[str, Any] | str] = [
        touch("L-1"),
        opening("D-1", lead=["L-1"]),  # type: ignore[arg-type]
        opening("D-2", pipeline=["new_business"]),
        opening("D-3", currency=["EUR"]),
        {"type": "lead_converted", "lead_id": "L-1", "occurred_at": AT, "deal_id": {"x": 1}},
        opening("D-4", lead="L-1"),
    ]
    report = ingest(memory_engine, tmp_path, lines)
    assert report.recorded == 2 and sorted(reasons(report)) == [2, 3, 4, 5]
    assert "field 'lead_id'" in reasons(report)[2] and "field 'deal_id'" in reasons(report)[5]
    assert "field 'pipeline'" in reasons(report)[3] and "field 'currency'" in reasons(report)[4]


def test_an_ill_typed_scenario_event_fails_naming_it(memory_engine: Engine) -> None:
    with pytest.raises(InvalidEvent, match=r"events\.0: field 'type'"):
        memory_engine.what_if({"name": "s", "events": [touch("L-1") | {"type": ["ad_viewed"]}]})


# --- 4. times -------------------------------------------------------------------------------

OUTSIDE = ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"]


@pytest.mark.parametrize("at", OUTSIDE)
def test_a_time_outside_the_years_in_utc_is_refused_naming_it(
    engine: Engine, tmp_path: Path, at: str
) -> None:
    report = ingest(engine, tmp_path, [touch("L-1"), touch("L-2", occurred_at=at)])
    assert report.recorded == 1 and "field 'occurred_at'" in reasons(report)[2]


@pytest.mark.parametrize("at", OUTSIDE)
def test_a_moment_outside_the_years_fails_in_one_line(
    cli: CliRunner, tmp_path: Path, at: str
) -> None:
    for args in (["funnel", "--as-of", at], ["pipeline", "--changes", at, "2026-01-01"]):
        result = cli.invoke(app, args)
        assert result.exit_code == 1 and "outside years 1-9999" in result.stderr, result.output
    scenario = tmp_path / "s.toml"
    scenario.write_text(f'as_of = "{at}"\n')
    result = cli.invoke(app, ["whatif", str(scenario)])
    assert result.exit_code == 1 and "as_of" in result.stderr, result.output


# --- 5. ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lead", ["L\u00001", "L" * 5000, "L\t1", "L" * 201, " L-1", "L-1\n", "L\u00a01", ""]
)
def test_a_lead_id_breaking_the_id_rule_is_refused_alone(
    engine: Engine, tmp_path: Path, lead: str
) -> None:
    lines: list[dict[str, Any] | str] = [touch("L-0"), touch(lead), opening("D-1", lead=lead)]
    report = ingest(engine, tmp_path, [*lines, opening("D-2", lead="L-0")])
    assert report.recorded == 2 and sorted(reasons(report)) == [2, 3]
    assert all("field 'lead_id'" in r for r in reasons(report).values())
    assert all(len(r) < 300 for r in reasons(report).values())  # the id is shown cut short


def test_one_id_rule_for_leads_deals_and_links(memory_engine: Engine) -> None:
    longest = "ü" * 200
    memory_engine.record("ad_viewed", longest, AT, channel="web")
    memory_engine.record("deal_opened", longest, AT, lead_id=longest, amount="1", owner="a")
    assert memory_engine.lead(longest).deal_id == longest
    with pytest.raises(InvalidEvent, match="field 'deal_id'"):
        memory_engine.record("deal_opened", "D 1", AT, amount="1", owner="a")
    with pytest.raises(InvalidEvent, match="field 'lead_id'"):  # a lone surrogate: not text
        memory_engine.record("ad_viewed", "L\ud800", AT, channel="web")


# --- 7. spans of days -----------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    return CliRunner()


@pytest.mark.parametrize("days", ["inf", "nan", "1e300", "-1", "0"])
def test_a_window_option_out_of_range_fails_in_one_line(cli: CliRunner, days: str) -> None:
    result = cli.invoke(app, ["funnel", "--window", days])
    assert result.exit_code != 0 and "conversion_window_days" in result.stderr, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    "toml",
    [
        "[funnel]\nconversion_window_days = inf",
        "[funnel]\nconversion_window_days = nan",
        "[transform]\nlost_after_days = 1e300",
        "[transform.lost_after_days]\nproposal = inf",
        "[[transform.shift]]\nevents = ['deal_won']\ndays = 1e12",
        "[transform]\nscale_amounts = 1e300",
        "[pipelines.new_business.stages.proposal]\nstale_after_days = inf",
    ],
)
def test_a_scenario_value_out_of_range_fails_naming_its_key(
    memory_engine: Engine, tmp_path: Path, toml: str
) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(toml + "\n")
    with pytest.raises(InvalidDefinition) as caught:
        memory_engine.what_if(scenario)
    assert caught.value.file == str(scenario) and caught.value.key != "-"


# --- a store error the boundary did not foresee -------------------------------------------


def test_a_store_error_on_a_batch_costs_only_its_line(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert = engine.store.recorder.insert_events

    def refusing(stored: Any, **kwargs: Any) -> Any:  # the database's error, as the library's
        if any(b'"refused"' in s.state for s in stored):
            raise DataError("the store refuses this value")
        return insert(stored, **kwargs)

    monkeypatch.setattr(engine.store.recorder, "insert_events", refusing)
    report = ingest(engine, tmp_path, [touch("L-1"), touch("L-2", channel="refused"), touch("L-3")])
    assert report.recorded == 2 and reasons(report) == {
        2: "not stored: appending 1 events to lead:L-2: the store refuses this value"
    }
    assert engine.lead("L-3").version == 1


def test_an_unforeseen_error_deciding_a_line_costs_only_its_line(
    memory_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dealengine.service.commands as module

    decide = module.decide

    def failing(pipelines: Any, cmd: Any, state: Any, now: Any, key: Any = None) -> Any:
        if cmd.target == "L-2":
            raise ArithmeticError("no such case")
        return decide(pipelines, cmd, state, now, key)

    monkeypatch.setattr(module, "decide", failing)
    report = ingest(memory_engine, tmp_path, [touch("L-1"), touch("L-2"), touch("L-3")])
    assert report.recorded == 2 and "ArithmeticError: no such case" in reasons(report)[2]


# --- what the boundary allows, every view survives -------------------------------------------

LARGEST = "999999999999999.9999"
EARLIEST, LATEST = "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"


def extreme_history(deals: int) -> list[dict[str, Any]]:
    longest = "Ω" * 199
    lines: list[dict[str, Any]] = []
    for i in range(deals):
        lead, deal = f"{longest}{i % 10}", f"{'D' * 190}{i:03d}"
        at = (EARLIEST, LATEST, "2026-03-01T00:00:00+14:00")[i % 3]
        if i < 10:
            lines.append(touch(lead, occurred_at=at, campaign="ç" * 500))
            lines.append({"type": "site_visited", "lead_id": lead, "occurred_at": LATEST,
                          "channel": "é" * 200, "page": "x" * 500})  # fmt: skip
            lines.append({"type": "lead_qualified", "lead_id": lead, "occurred_at": at,
                          "by": "ß" * 500})  # fmt: skip
        opened = opening(deal, lead if i < 10 else None, amount=LARGEST, occurred_at=at)
        lines.append(opened | {"owner": "名" * 500, "expected_close_on": "9999-12-31"})
        then = LATEST if at != LATEST else at
        match i % 4:
            case 0:
                lines.append({"type": "deal_won", "deal_id": deal, "occurred_at": then})
            case 1:
                lines.append({"type": "deal_lost", "deal_id": deal, "occurred_at": then,
                              "reason": "€" * 500})  # fmt: skip
            case 2:
                lines.append({"type": "proposal_sent", "deal_id": deal, "occurred_at": then,
                              "amount": LARGEST})  # fmt: skip
    return lines


def test_every_view_survives_the_extremes_the_boundary_allows(
    engine: Engine, tmp_path: Path, cli_on: Any
) -> None:
    report = ingest(engine, tmp_path, extreme_history(300))  # type: ignore[arg-type]
    assert report.ok, report.rejected[:3]
    every_view(engine)
    for moment in (EARLIEST, LATEST):
        as_of = datetime.fromisoformat(moment)
        engine.views(as_of=as_of)
        engine.stage_times(as_of=as_of)
        render_report(engine, as_of=as_of)
    engine.pipeline_changes(datetime.fromisoformat(EARLIEST), datetime.fromisoformat(LATEST))
    engine.history("Ω" * 199 + "0")
    for args in (
        ["funnel", "--mode", "ordered", "--window", "3652059", "--cohort", "week"],
        ["funnel", "--as-of", EARLIEST, "--cohort", "week"],
        ["pipeline", "--full"],
        ["pipeline", "--deals", "--as-of", LATEST],
        ["pipeline", "--changes", EARLIEST, LATEST],
        ["report", "--output", str(tmp_path / "r.html"), "--as-of", EARLIEST],
        ["verify"],
    ):
        result = cli_on(engine.settings, args)
        assert result.exit_code == 0, (args, result.output)
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        "[transform]\nlost_after_days = 3652059\nscale_amounts = 1000\n"
        "[[transform.shift]]\nevents = ['deal_won', 'ad_viewed']\ndays = -3652059\n"
    )
    assert cli_on(engine.settings, ["whatif", str(scenario)]).exit_code == 0


@pytest.fixture
def cli_on(monkeypatch: pytest.MonkeyPatch) -> Any:
    def invoke(settings: Settings, args: list[str]) -> Any:
        if settings.database_url is None:
            monkeypatch.setenv("DEALENGINE_DB", str(settings.db))
            monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
        else:
            monkeypatch.setenv("DEALENGINE_DATABASE_URL", settings.database_url)
        result = CliRunner().invoke(app, args)
        assert not isinstance(result.exception, DealEngineError)
        return result

    return invoke


def test_an_event_stored_before_a_rule_it_breaks_is_read_as_written(
    engine: Engine, tmp_path: Path
) -> None:
    """A campaign with a tab was accepted before the text rule: its lead stays readable and
    writable, its history shows it as written, and its chain verifies."""
    from uuid import uuid4

    from dealengine.domain.events import AdViewed

    at = datetime.fromisoformat(AT)
    earlier = AdViewed.model_construct(
        originator_id="lead:L-1", originator_version=1, id=uuid4(), occurred_at=at,
        recorded_at=at, actor="t", source="t", idempotency_key=None, prev_hash=None,
        channel="web", campaign="spring\tsale",
    )  # fmt: skip
    engine.store.append([earlier])
    report = ingest(engine, tmp_path, [touch("L-1"), touch("L-1", campaign="spring\tsale")])
    assert report.recorded == 1 and "field 'campaign'" in reasons(report)[2]
    assert [e.campaign for e in engine.history("L-1")] == ["spring\tsale", None]  # type: ignore[attr-defined]
    assert engine.verify().ok
    every_view(engine)
