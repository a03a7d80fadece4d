"""A file that does not fit (no mapping for a CSV, the wrong mapping, the wrong delimiter) is
reported once, before any row, with the fix; a UTF-8 byte-order mark is accepted, in a CSV and
in a JSONL file (issue 18, item 3). Reproduced on the Olist files of the README."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dealengine.cli import app

ROOT = Path(__file__).resolve().parents[1]
OLIST = ROOT / "tests" / "data" / "olist"
LEADS = OLIST / "olist_marketing_qualified_leads_dataset.csv"
DEALS = OLIST / "olist_closed_deals_dataset.csv"
LEADS_MAPPING = ROOT / "projections" / "mappings" / "olist-leads.toml"
DEALS_MAPPING = ROOT / "projections" / "mappings" / "olist-deals.toml"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    return CliRunner()


def once(result: object, *parts: str) -> None:
    """Exit 1 with one line on stderr holding every part."""
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert stderr.count("\n") == 1, stderr[:2000]
    for part in parts:
        assert part in stderr, (part, stderr)


def events(cli: CliRunner) -> int:
    return int(orjson.loads(cli.invoke(app, ["info", "--format", "json"]).stdout)["events"])


def test_a_csv_without_a_mapping(cli: CliRunner, tmp_path: Path) -> None:
    once(cli.invoke(app, ["ingest", str(DEALS)]), f"{DEALS} is a CSV", "--mapping")
    renamed = tmp_path / "deals.txt"  # not named .csv: its header gives it away
    renamed.write_bytes(DEALS.read_bytes())
    once(cli.invoke(app, ["ingest", str(renamed)]), "looks like a CSV header", "--mapping")
    assert events(cli) == 0


def test_the_wrong_mapping(cli: CliRunner) -> None:
    result = cli.invoke(app, ["ingest", str(DEALS), "--mapping", str(LEADS_MAPPING)])
    once(result, "the mapping needs columns the file lacks: first_contact_date",
         "the right mapping")  # fmt: skip
    assert events(cli) == 0


def test_the_wrong_delimiter(cli: CliRunner, tmp_path: Path) -> None:
    semicolons = tmp_path / "leads.csv"
    semicolons.write_text(LEADS.read_text().replace(",", ";"))
    result = cli.invoke(app, ["ingest", str(semicolons), "--mapping", str(LEADS_MAPPING)])
    once(result, "delimited by ';'", "delimiter = ';'")
    assert events(cli) == 0


def test_a_csv_with_a_byte_order_mark(cli: CliRunner, tmp_path: Path) -> None:
    """Given the Olist leads saved by Excel (a UTF-8 BOM first), then every row is recorded."""
    with_bom = tmp_path / "leads.csv"
    with_bom.write_bytes(b"\xef\xbb\xbf" + LEADS.read_bytes())
    result = cli.invoke(app, ["ingest", str(with_bom), "--mapping", str(LEADS_MAPPING)])
    assert result.exit_code == 0, result.stderr[:2000]
    assert ": 8000 lines: 8000 interactions recorded" in result.stderr
    assert events(cli) == 16_000  # a visit and a qualification a row


def test_a_jsonl_file_with_a_byte_order_mark(cli: CliRunner, tmp_path: Path) -> None:
    visit = {"type": "site_visited", "lead_id": "L-1", "occurred_at": "2026-03-01T09:00:00Z",
             "channel": "web"}  # fmt: skip
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + orjson.dumps(visit) + b"\n")
    result = cli.invoke(app, ["ingest", str(path)])
    assert result.exit_code == 0, result.stderr
    assert "1 interactions recorded" in result.stderr and events(cli) == 1
