"""A store written under another model (issue 16, item 2): events that name a pipeline, a stage
or an interaction type the definitions in use do not define are a one-line error naming them
and the definitions folder in use; never a traceback, never an empty report with exit 0."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dealengine import Engine, Settings, UndefinedInModel, load_model
from dealengine.cli import app
from dealengine.domain.definitions import definitions_dir
from tests.test_model_folder import EUR_PIPELINE

SHIPPED = str(definitions_dir().resolve())


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "store.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    monkeypatch.delenv("DEALENGINE_DEFINITIONS", raising=False)
    return CliRunner()


def one_line_error(result: object, *parts: str) -> None:
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    for part in parts:
        assert part in stderr, (part, stderr)


def model_folder(tmp_path: Path, pipeline_toml: str) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "pipeline.toml").write_text(pipeline_toml)
    (folder / "funnel.toml").write_bytes((definitions_dir() / "funnel.toml").read_bytes())
    return folder


def written_through_the_api(tmp_path: Path, folder: Path) -> None:
    """The issue's case: a host records deals under its own pipeline `eu_sales`."""
    model = load_model(folder)
    settings = Settings(db=str(tmp_path / "store.db"), database_url=None)
    with Engine(settings, pipeline=model.pipelines) as engine:
        engine.record("site_visited", "L-1", "2026-03-01T09:00:00Z", channel="web")
        engine.record(
            "deal_opened", "D-1", "2026-03-02T09:00:00Z", lead_id="L-1", amount="10", owner="a"
        )
        engine.record("proposal_sent", "D-1", "2026-03-03T09:00:00Z", amount="12")


UNDEFINED_PIPELINE = (
    "deal D-1 is in pipeline 'eu_sales', which the definitions in use do not define",
    f"definitions in use: {SHIPPED}",
)


@pytest.mark.parametrize(
    "command",
    [
        ["history", "D-1"],
        ["history", "D-1", "--format", "json"],
        ["audit", "D-1"],
        ["pipeline"],
        ["pipeline", "--full"],
        ["pipeline", "--deals"],
        ["pipeline", "--changes", "2026-01-01", "2026-12-31"],
        ["report", "--output", "report.html"],
        ["whatif", str(definitions_dir() / "scenarios" / "big-deal.toml")],
        ["rebuild"],
    ],
)
def test_a_pipeline_the_model_in_use_does_not_define(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    written_through_the_api(tmp_path, model_folder(tmp_path, EUR_PIPELINE))
    one_line_error(cli.invoke(app, command), *UNDEFINED_PIPELINE)
    assert not (tmp_path / "report.html").exists()


def test_the_model_it_was_written_under_reads_it(cli: CliRunner, tmp_path: Path) -> None:
    folder = model_folder(tmp_path, EUR_PIPELINE)
    written_through_the_api(tmp_path, folder)
    for command in (["history", "D-1"], ["audit", "D-1"], ["pipeline"]):
        result = cli.invoke(app, ["--definitions", str(folder), *command])
        assert result.exit_code == 0, result.stderr
    digest = load_model(folder).digest
    audit = cli.invoke(app, ["--definitions", str(folder), "audit", "D-1"])
    assert f"rules in force for v1-v2: {digest}" in audit.stdout
    page = tmp_path / "audit.html"
    cli.invoke(app, ["--definitions", str(folder), "audit", "D-1", "-o", str(page)])
    assert "<h2>Rules in force</h2>" in page.read_text() and digest in page.read_text()
    # the funnel names no pipeline: it reads the store under either model
    assert cli.invoke(app, ["funnel"]).exit_code == 0
    # and the store says which model each write was decided under
    with Engine(Settings(db=str(tmp_path / "store.db"), database_url=None)) as engine:
        [change] = engine.model_changes()
        assert change.position == 1 and change.digest == load_model(folder).digest


def test_a_write_onto_such_a_deal_is_a_rejected_line(cli: CliRunner, tmp_path: Path) -> None:
    """The line naming the deal is rejected, naming the pipeline; the other lines are stored."""
    written_through_the_api(tmp_path, model_folder(tmp_path, EUR_PIPELINE))
    lines = tmp_path / "more.jsonl"
    lines.write_text(
        '{"type": "site_visited", "lead_id": "L-5", "occurred_at": "2026-03-01T09:00:00Z", "channel": "web"}\n'
        '{"type": "deal_won", "deal_id": "D-1", "occurred_at": "2026-03-05T09:00:00Z"}\n'
    )
    result = cli.invoke(app, ["ingest", str(lines)])
    assert result.exit_code == 1
    assert f"{lines}:2: {UNDEFINED_PIPELINE[0]}" in result.stderr
    assert "1 rejected" in result.stderr
    settings = Settings(db=str(tmp_path / "store.db"), database_url=None)
    with Engine(settings) as engine:
        assert engine.store.count() == 5  # the 4 before and L-5's visit
        with pytest.raises(UndefinedInModel, match="pipeline 'eu_sales'"):
            engine.record("deal_won", "D-1", "2026-03-05T09:00:00Z")
        with pytest.raises(UndefinedInModel, match="pipeline 'eu_sales'"):
            engine.void("D-1", "v2", reason="typo")
        assert engine.store.count() == 5


def test_a_stage_the_model_in_use_does_not_define(cli: CliRunner, tmp_path: Path) -> None:
    """Given a deal moved (deal_stage_changed) to a stage of the host's `new_business`, which
    the shipped `new_business` does not have, then reading it is one line naming the stage."""
    own = EUR_PIPELINE.replace('"eu_sales"', '"new_business"').replace('"EUR"', '"USD"')
    folder = model_folder(tmp_path, own)
    settings = Settings(db=str(tmp_path / "store.db"), database_url=None)
    with Engine(settings, definitions=folder) as engine:
        engine.record("deal_opened", "D-1", "2026-03-02T09:00:00Z", amount="10", owner="a")
        engine.record(
            "deal_stage_changed", "D-1", "2026-03-03T09:00:00Z", to_stage="demo_done", reason="r"
        )
    expected = (
        "deal D-1 moved to stage 'demo_done', which pipeline 'new_business' of the definitions "
        "in use does not define",
        f"definitions in use: {SHIPPED}",
    )
    for command in (["history", "D-1"], ["audit", "D-1"], ["pipeline"], ["pipeline", "--full"]):
        one_line_error(cli.invoke(app, command), *expected)
    assert cli.invoke(app, ["--definitions", str(folder), "pipeline"]).exit_code == 0


def test_an_interaction_type_the_model_in_use_does_not_define(
    cli: CliRunner, tmp_path: Path
) -> None:
    """Given an event of a type this model does not know (stored by a model that declared it)
    on a lead and another on a deal, then every read of them is one line naming the type (the
    pipeline reads the deals' streams only)."""
    settings = Settings(db=str(tmp_path / "store.db"), database_url=None)
    with Engine(settings) as engine:
        engine.record("site_visited", "L-1", "2026-03-01T09:00:00Z", channel="web")
        engine.record("deal_opened", "D-1", "2026-03-02T09:00:00Z", lead_id="L-1",
                      amount="100", owner="ana")  # fmt: skip
    with sqlite3.connect(tmp_path / "store.db") as db:
        db.executemany(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "SELECT ?1, MAX(originator_version) + 1, ?2, '{}' FROM stored_events "
            "WHERE originator_id = ?1",
            [("lead:L-1", "interactions:TrialStarted"), ("deal:D-1", "interactions:DealAudited")],
        )
    shown = f"definitions in use: {SHIPPED}"
    expected = ("is of type 'interactions:TrialStarted', which the definitions in use do not",)
    for command in (["history", "L-1"], ["funnel"], ["funnel", "--full"]):
        one_line_error(cli.invoke(app, command), *expected, shown)
    expected = ("is of type 'interactions:DealAudited', which the definitions in use do not",)
    for command in (["history", "D-1"], ["pipeline"], ["pipeline", "--full"]):
        one_line_error(cli.invoke(app, command), *expected, shown)


def test_the_api_raises_undefined_in_model(tmp_path: Path) -> None:
    written_through_the_api(tmp_path, model_folder(tmp_path, EUR_PIPELINE))
    with Engine(Settings(db=str(tmp_path / "store.db"), database_url=None)) as engine:
        with pytest.raises(UndefinedInModel, match="pipeline 'eu_sales'"):
            engine.deal("D-1")
        with pytest.raises(UndefinedInModel, match="pipeline 'eu_sales'"):
            engine.pipeline()
        with pytest.raises(UndefinedInModel, match="pipeline 'eu_sales'"):
            engine.live_pipeline()
        assert engine.lead("L-1").deal_id == "D-1"
