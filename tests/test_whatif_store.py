"""What-if against real stores (SQLite and PostgreSQL): the store opened read-only and left
byte for byte as it was; an empty scenario equal to the live views; the example scenarios of
projections/scenarios run on the demo history; `dealengine whatif` in tables and JSON."""

from __future__ import annotations

import hashlib
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from dealengine import Engine, Settings
from dealengine.cli import app
from dealengine.demo import generate
from dealengine.domain.lines import interaction_from
from dealengine.whatif import load_scenario

from .conftest import PG_URL, Clock

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "projections" / "scenarios"
EXAMPLES = sorted(SCENARIOS.glob("*.toml"))


def ingest(engine: Engine, lines: list[dict[str, Any]]) -> None:
    outcomes = engine.execute_batch([interaction_from(line, "t", "t") for line in lines])
    assert not [o for o in outcomes if isinstance(o, Exception)]


def checksum(settings: Settings) -> str:
    """A digest of every table of the store (names, definitions and rows, in order)."""
    digest = hashlib.sha256()
    if settings.database_url is None:
        db = sqlite3.connect(f"file:{settings.db}?mode=ro", uri=True)
        for name, definition in db.execute(
            "SELECT name, sql FROM sqlite_master ORDER BY type, name"
        ):
            digest.update(f"{name}\n{definition}\n".encode())
            if definition and definition.startswith("CREATE TABLE"):
                for row in db.execute(f'SELECT * FROM "{name}" ORDER BY rowid'):
                    digest.update(repr(row).encode())
        db.close()
        return digest.hexdigest()
    schema = settings.database_url.rpartition("schema=")[2]
    with psycopg.connect(PG_URL) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,)
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1", (schema,)
        ).fetchall()
        digest.update(repr((tables, indexes)).encode())
        for (table,) in tables:
            query = sql.SQL("SELECT t::text FROM {}.{} t ORDER BY 1").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            for (row,) in conn.execute(query):
                digest.update(row.encode())
    return digest.hexdigest()


HYPOTHETICAL = {
    "name": "hypothetical",
    "events": [
        {"type": "site_visited", "lead_id": "L-NEW", "occurred_at": "2026-05-10T09:00:00Z",
         "channel": "referral"},
        {"type": "lead_qualified", "lead_id": "L-NEW", "occurred_at": "2026-05-11T09:00:00Z",
         "by": "x"},
        {"type": "deal_opened", "deal_id": "D-NEW", "lead_id": "L-NEW",
         "occurred_at": "2026-05-12T09:00:00Z", "amount": "99000", "owner": "ana"},
        {"type": "deal_won", "deal_id": "D-NEW", "occurred_at": "2026-05-13T09:00:00Z"},
    ],
    "transform": {"lost_after_days": 20, "scale_amounts": 2},
}  # fmt: skip


def test_what_if_writes_nothing_and_sees_its_hypothetical_events_only(
    settings: Settings, clock: Clock
) -> None:
    with Engine(settings, clock=clock) as writer:
        ingest(writer, generate(150, 11))
        funnel, pipeline = writer.views()
    before = checksum(settings)
    file_bytes = Path(settings.db).read_bytes() if settings.database_url is None else b""
    read_only = settings.model_copy(update={"read_only": True})
    with Engine(read_only, clock=clock) as engine:
        result = engine.what_ifs([HYPOTHETICAL, {"name": "empty"}, *EXAMPLES])
        assert result.baseline.funnel == funnel and result.baseline.pipeline == pipeline
        assert result["empty"].funnel == funnel and result["empty"].pipeline == pipeline
        new = result["hypothetical"]
        assert new.diff.steps[0].leads.change == 1
        assert any(s.deals.change for s in new.diff.stages)
        assert engine.views() == (funnel, pipeline)
        with pytest.raises(Exception, match=r"read-?only"):
            engine.record("site_visited", "L-X", "2026-05-01T00:00:00Z", channel="x")
    assert checksum(settings) == before
    if settings.database_url is None:
        assert Path(settings.db).read_bytes() == file_bytes
    with Engine(settings, clock=clock) as writer:
        assert writer.views() == (funnel, pipeline)
        assert not writer.store.exists("lead:L-NEW") and not writer.store.exists("deal:D-NEW")


def test_an_empty_scenario_equals_the_live_views(settings: Settings, clock: Clock) -> None:
    with Engine(settings, clock=clock) as writer:
        ingest(writer, generate(200, 5))
        live_funnel, _ = writer.live_funnel()
        live_pipeline, _ = writer.live_pipeline()
    with Engine(settings.model_copy(update={"read_only": True}), clock=clock) as engine:
        scenario = engine.what_if({"name": "nothing"})["nothing"]
    counted = {"steps", "by_channel", "breakdowns", "cohorts", "excluded_leads", "leads"}
    assert scenario.funnel.model_dump(include=counted) == live_funnel.model_dump(include=counted)
    counted = {"won", "lost", "win_rate", "win_rate_by_amount", "average_deal_size",
               "lost_reasons", "forecast", "forecast_by_close_month"}  # fmt: skip
    assert scenario.pipeline.model_dump(include=counted) == live_pipeline.model_dump(
        include=counted
    )

    def totals(view: Any) -> list[tuple[str, int, Decimal, Decimal]]:
        return [(s.name, s.open_deals, s.amount, s.weighted_amount) for s in view.stages]

    assert totals(scenario.pipeline) == totals(live_pipeline)


def test_a_read_only_store_must_exist(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no store at"):
        Engine(Settings(db=str(tmp_path / "nowhere.db"), database_url=None, read_only=True))
    assert not (tmp_path / "nowhere.db").exists()


# --- the example scenarios -------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> Any:
    clock = Clock()
    engine = Engine.in_memory(clock=clock)
    ingest(engine, generate(600, 7))
    result = engine.what_ifs(EXAMPLES)
    yield engine, result
    engine.close()


def test_there_are_example_scenarios_with_a_readme() -> None:
    assert len(EXAMPLES) >= 4
    readme = (SCENARIOS / "README.md").read_text()
    for path in EXAMPLES:
        scenario = load_scenario(path)
        assert scenario.question, path
        assert f"`{path.name}`" in readme, f"{path.name} is not in the README"


def test_example_thirty_day_window(demo: Any) -> None:
    engine, result = demo
    s = result["thirty-day-window"]
    assert s.funnel == engine.funnel(mode="ordered", conversion_window_days=30)
    assert s.pipeline == result.baseline.pipeline


def test_example_stricter_qualification(demo: Any) -> None:
    engine, result = demo
    steps = [st.model_dump() for st in engine.funnel_definition.steps]
    steps[4]["within_days"] = 7
    assert result["stricter-qualification"].funnel == engine.funnel(mode="ordered", steps=steps)
    ordered = engine.funnel(mode="ordered")
    assert result["stricter-qualification"].funnel.steps[4].leads < ordered.steps[4].leads


def test_example_demo_counts_as_qualified(demo: Any) -> None:
    _, result = demo
    base = {s.name: s.leads for s in result.baseline.funnel.steps}
    s = {st.name: st.leads for st in result["demo-counts-as-qualified"].funnel.steps}
    assert "intent" not in s and s["qualified"] == base["intent"] > base["qualified"]
    assert s["won"] == base["won"]


def test_example_without_paid_social(demo: Any) -> None:
    _, result = demo
    base = result.baseline.funnel
    social = base.by_channel["social"]
    s = result["without-paid-social"]
    assert [x.leads for x in s.funnel.steps] == [
        b.leads - c.leads for b, c in zip(base.steps, social.steps, strict=True)
    ]
    assert "social" not in s.funnel.by_channel
    assert s.pipeline.won.deals == result.baseline.pipeline.won.deals - social.steps[-1].leads


def test_example_conservative_forecast(demo: Any) -> None:
    _, result = demo
    s = result["conservative-forecast"]
    assert s.funnel == result.baseline.funnel
    proposal = next(st for st in s.pipeline.stages if st.name == "proposal")
    assert proposal.weighted_amount == proposal.amount * Decimal("0.35")
    assert s.pipeline.forecast["commit"].deals == 0
    assert s.diff.stages[-3].stage == "open" and s.diff.stages[-3].weighted_amount.change < 0


def test_example_stalled_deals_lost(demo: Any) -> None:
    _, result = demo
    s = result["stalled-deals-lost"].pipeline
    b = result.baseline.pipeline

    def deals(view: Any) -> int:
        return sum(st.open_deals for st in view.stages) + view.won.deals + view.lost.deals

    assert deals(s) == deals(b)  # no deal appears or disappears: some are lost earlier
    assert s.lost.deals > b.lost.deals and s.won.deals < b.won.deals
    assert any(reason.startswith("what-if: over 45 days") for reason in s.lost_reasons)


def test_example_big_deal(demo: Any) -> None:
    _, result = demo
    diff = result["big-deal"].diff
    assert [c.leads.change for c in diff.steps] == [1] * 7
    won = next(c for c in diff.stages if c.stage == "won")
    assert (won.deals.change, won.amount.change) == (1, Decimal("250000.00"))


def test_example_last_quarter(demo: Any) -> None:
    engine, result = demo
    s = result["last-quarter"]
    assert s.as_of is not None and s.as_of.isoformat() == "2026-09-30T23:59:59.999999+00:00"
    q3 = engine.what_if(
        {"name": "q3", "filter": {"from": "2026-07-01"}}, as_of=s.as_of
    )["q3"]  # fmt: skip
    assert q3.funnel == s.funnel  # the end of the range is the as-of
    assert 0 < s.funnel.leads < result.baseline.funnel.leads


# --- the command -----------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    db = tmp_path / "cli.db"
    monkeypatch.setenv("DEALENGINE_DB", str(db))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    with Engine(Settings(db=str(db), database_url=None)) as engine:
        ingest(engine, generate(300, 7))
    return CliRunner()


def test_the_whatif_command(cli: CliRunner, tmp_path: Path) -> None:
    files = [str(SCENARIOS / "without-paid-social.toml"), str(SCENARIOS / "big-deal.toml")]
    before = (tmp_path / "cli.db").read_bytes()
    shown = cli.invoke(app, ["whatif", *files])
    assert shown.exit_code == 0, shown.output
    assert "without-paid-social" in shown.stdout and "big-deal" in shown.stdout
    assert "awareness" in shown.stdout and "won amount" in shown.stdout
    assert "+250000.00" in shown.stdout
    data = orjson.loads(cli.invoke(app, ["whatif", *files, "--format", "json"]).stdout)
    assert set(data) == {"baseline", "scenarios"}
    assert set(data["baseline"]) == {"funnel", "pipeline"}
    big = data["scenarios"]["big-deal"]
    assert {"funnel", "pipeline", "diff", "question"} <= set(big)
    won = next(s for s in big["diff"]["stages"] if s["stage"] == "won")
    assert won["amount"]["change"] == "250000.00" and won["deals"]["change"] == 1
    awareness = big["diff"]["steps"][0]["leads"]
    assert awareness["change"] == 1 and awareness["relative"] == pytest.approx(1 / 300)
    assert (tmp_path / "cli.db").read_bytes() == before


def test_the_whatif_command_reports_a_bad_scenario_in_one_line(
    cli: CliRunner, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[pipelines.new_business.stages.proposal]\nprobability = 2\n")
    result = cli.invoke(app, ["whatif", str(bad)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"{bad}: pipelines.new_business.stages.proposal.probability: " in lines[0]


def test_the_whatif_command_needs_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "none.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["whatif", str(EXAMPLES[0])])
    assert result.exit_code == 1 and "no store at" in result.stderr
    assert not (tmp_path / "none.db").exists()
