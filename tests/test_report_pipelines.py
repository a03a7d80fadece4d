"""Every pipeline that has deals gets its section in the report, and `dealengine pipeline` on
an empty default pipeline says where the deals are (issue 18, items 1 and 10)."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dealengine.cli import app

LINES = [
    {"type": "site_visited", "lead_id": "L-1", "occurred_at": "2026-03-01T09:00:00Z",
     "channel": "web"},
    {"type": "lead_qualified", "lead_id": "L-1", "occurred_at": "2026-03-02T09:00:00Z",
     "by": "sdr"},
    {"type": "deal_opened", "deal_id": "D-1", "lead_id": "L-1", "pipeline": "olist",
     "currency": "BRL", "occurred_at": "2026-03-03T09:00:00Z", "amount": "1234567.5",
     "owner": "ana"},
    {"type": "deal_won", "deal_id": "D-1", "occurred_at": "2026-03-04T09:00:00Z"},
    {"type": "deal_opened", "deal_id": "D-2", "pipeline": "olist", "currency": "BRL",
     "occurred_at": "2026-03-05T09:00:00Z", "amount": "5000", "owner": "bo"},
    {"type": "deal_lost", "deal_id": "D-2", "occurred_at": "2026-03-06T09:00:00Z",
     "reason": "no budget"},
]  # fmt: skip


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    runner = CliRunner()
    path = tmp_path / "h.jsonl"
    path.write_text("".join(orjson.dumps(line).decode() + "\n" for line in LINES))
    done = runner.invoke(app, ["ingest", str(path)])
    assert done.exit_code == 0, done.stderr
    return runner


def sections(page: str) -> list[str]:
    return re.findall(r"<section id='pipeline-([^']+)'>", page)


def test_the_report_has_a_section_for_each_pipeline_with_deals(
    cli: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "r.html"
    assert cli.invoke(app, ["report", "-o", str(out), "--as-of", "2026-03-31"]).exit_code == 0
    page = out.read_text()
    assert sections(page) == ["olist"]  # new_business and renewals have none
    assert "1,234,567.50 BRL" in page and "5,000.00 BRL" in page
    for table in ("forecast-table", "owners-table", "lost-table", "time-table", "waterfall-table"):
        assert f"id='{table}'" in page, table  # fmt: skip
    assert "win rate 50.0% by count" in page and ">no budget<" in page
    assert re.search(r"generated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; as of 2026-03-31", page)
    assert cli.invoke(app, ["report", "-o", str(out), "--all-pipelines"]).exit_code == 0
    assert sections(out.read_text()) == ["new_business", "renewals", "olist"]
    assert cli.invoke(app, ["report", "-o", str(out), "--pipeline", "renewals"]).exit_code == 0
    assert sections(out.read_text()) == ["renewals"]
    both = cli.invoke(app, ["report", "--pipeline", "olist", "--all-pipelines"])
    assert both.exit_code == 1 and "not both" in both.stderr


@pytest.mark.parametrize("extra", [[], ["--full"], ["--as-of", "2026-03-31"]])
def test_an_empty_default_pipeline_says_where_the_deals_are(
    cli: CliRunner, extra: list[str]
) -> None:
    result = cli.invoke(app, ["pipeline", *extra])
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == (
        "pipeline new_business (the default) has no deals; deals are in: olist (2 deals): "
        "dealengine pipeline --pipeline olist\n"
    )
    olist = cli.invoke(app, ["pipeline", "--pipeline", "olist", *extra])
    assert "pipeline olist" in olist.stdout
