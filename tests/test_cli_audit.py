"""`dealengine audit` as a user meets it: tables on the terminal (never HTML), exit status 1
when the deal's integrity is broken (as `verify`), and a lead's id answered as a lead's
(issue 18, item 6)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dealengine.cli import app

LINES = [
    {"type": "site_visited", "lead_id": "L-000364", "occurred_at": "2026-03-01T09:00:00Z",
     "channel": "web"},
    {"type": "lead_qualified", "lead_id": "L-000364", "occurred_at": "2026-03-02T09:00:00Z",
     "by": "sdr"},
    {"type": "deal_opened", "deal_id": "D-7", "lead_id": "L-000364",
     "occurred_at": "2026-03-03T09:00:00Z", "amount": "12000", "owner": "ana"},
    {"type": "proposal_sent", "deal_id": "D-7", "occurred_at": "2026-03-09T09:00:00Z"},
    {"type": "site_visited", "lead_id": "L-9", "occurred_at": "2026-03-01T09:00:00Z",
     "channel": "web"},
]  # fmt: skip


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    runner = CliRunner()
    path = tmp_path / "h.jsonl"
    path.write_text("".join(orjson.dumps(line).decode() + "\n" for line in LINES))
    assert runner.invoke(app, ["ingest", str(path)]).exit_code == 0
    return runner


def test_audit_prints_tables_not_html(cli: CliRunner) -> None:
    result = cli.invoke(app, ["audit", "D-7"])
    assert result.exit_code == 0, result.output
    assert "<" not in result.stdout and "audit of deal D-7: proposal" in result.stdout
    assert "integrity: intact" in result.stdout and "proposal_sent" in result.stdout


def test_audit_writes_html_to_a_file_by_its_suffix(cli: CliRunner, tmp_path: Path) -> None:
    page, data = tmp_path / "audit.html", tmp_path / "audit.json"
    assert cli.invoke(app, ["audit", "D-7", "-o", str(page)]).exit_code == 0
    assert cli.invoke(app, ["audit", "D-7", "-o", str(data)]).exit_code == 0
    assert page.read_text().startswith("<!doctype html>")
    assert orjson.loads(data.read_bytes())["deal_id"] == "D-7"


def test_a_broken_chain_exits_1_like_verify(cli: CliRunner, tmp_path: Path) -> None:
    """Given the deal's proposal edited in the database behind the engine's back, when it is
    audited, then the report says BROKEN and the exit status is 1."""
    with sqlite3.connect(tmp_path / "cli.db") as db:
        db.execute("UPDATE stored_events SET state = replace(state, 'ana', 'bob') "
                   "WHERE originator_id = 'deal:D-7' AND originator_version = 1")  # fmt: skip
    result = cli.invoke(app, ["audit", "D-7"])
    assert result.exit_code == 1
    assert "integrity: BROKEN" in result.stdout and "integrity BROKEN" in result.stderr
    as_json = cli.invoke(app, ["audit", "D-7", "--format", "json"])
    assert as_json.exit_code == 1 and orjson.loads(as_json.stdout)["integrity"]["intact"] is False
    assert cli.invoke(app, ["verify"]).exit_code == 1


@pytest.mark.parametrize(
    ("lead", "answer"),
    [("L-000364", "its deal is D-7 (audit D-7)"), ("L-9", "it has no deal yet")],
)
def test_a_lead_id_is_answered_as_a_lead(cli: CliRunner, lead: str, answer: str) -> None:
    result = cli.invoke(app, ["audit", lead])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {lead} is a lead; audit reports a deal: {answer}; "
        f"for the lead's events: history {lead}\n"
    )


def test_the_audit_page_reads_as_a_timeline_in_local_time(cli: CliRunner, tmp_path: Path) -> None:
    """Given the deal's report as HTML, then its times read to the second in the zone named
    (no raw ISO with microseconds), its events stand on a vertical timeline, and each event's
    fields are a small table."""
    import re
    from zoneinfo import ZoneInfo

    from dealengine.audit.report import build_report, report_html
    from dealengine.engine import Engine
    from dealengine.settings import Settings

    with Engine(Settings(db=str(tmp_path / "cli.db"), database_url=None)) as engine:
        page = report_html(build_report(engine, "D-7"), ZoneInfo("Europe/Paris"))
    shown = re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", page, flags=re.S))
    assert not re.search(r"\d{2}:\d{2}:\d{2}\.\d{6}", shown)  # no microseconds on the page
    assert "2026-03-03 10:00:00 CET" in shown  # deal_opened, 09:00 UTC
    assert "<time datetime='2026-03-03T09:00:00.000000Z'>" in page
    assert page.count("<ol class='timeline'>") == 1 and page.count("<li") == 2
    assert "<table class='fields'><tr><th>lead_id</th><td>L-000364</td></tr>" in page
