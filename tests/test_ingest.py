"""JSONL ingest: bad lines named by number and reason, good lines kept, re-ingest adds nothing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dealengine import Engine, Settings
from dealengine.cli import app
from dealengine.ingest.jsonl import ingest_jsonl

GOOD_AND_BAD = [
    '{"type": "site_visited", "lead_id": "L-1", "occurred_at": "2026-03-01T10:00:00Z", "channel": "web", "id": "a1"}',
    '{"type": "ad_viewed", "lead_id": "L-2", "occurred_at": "2026-03-01T10:00:00Z", "channel": "social"',
    "[1, 2, 3]",
    '{"type": "ad_clicked", "lead_id": "L-2", "occurred_at": "2026-03-01T10:00:00Z"}',
    '{"type": "ad_viewed", "lead_id": "L-2", "occurred_at": "2026-03-01T10:00:00Z"}',
    '{"type": "lead_qualified", "lead_id": "L-1", "occurred_at": "2026-03-02T10:00:00Z", "by": "sdr", "id": "a2"}',
    "",
    '{"type": "deal_opened", "deal_id": "D-1", "lead_id": "L-1", "occurred_at": "2026-03-03T10:00:00Z",'
    ' "amount": "lots", "owner": "ana", "id": "a3"}',
    '{"type": "deal_opened", "deal_id": "D-1", "lead_id": "L-1", "occurred_at": "2026-03-03T10:00:00Z",'
    ' "amount": "5000", "owner": "ana", "id": "a4"}',
    '{"type": "negotiation_started", "deal_id": "D-1", "occurred_at": "2026-03-04T10:00:00Z", "id": "a5"}',
    '{"type": "discovery_completed", "deal_id": "D-1", "occurred_at": "2026-03-05T10:00:00Z"}',
    '{"type": "lead_qualified", "lead_id": "L-404", "occurred_at": "2026-03-05T10:00:00Z", "by": "x"}',
    '{"type": "deal_won", "deal_id": "D-404", "occurred_at": "2026-03-05T10:00:00Z"}',
    '{"type": "demo_requested", "occurred_at": "2026-03-05T10:00:00Z"}',
    '{"type": "demo_requested", "lead_id": "L-1", "occurred_at": "2026-03-05 10:00"}',
    '{"type": "deal_won", "deal_id": "D-1", "occurred_at": "2026-03-06T10:00:00+01:00", "amount": 5200, "id": "a6"}',
]
# line number -> words the reason must contain (line 7 is blank and is skipped silently)
EXPECTED_REJECTIONS = {
    2: "not valid JSON",
    3: "expected a JSON object",
    4: "unknown event type 'ad_clicked'",
    5: "field 'channel': missing",
    8: "field 'amount'",
    11: "deal D-1 is in 'negotiation': discovery_completed refused",
    12: "unknown lead L-404",
    13: "unknown deal D-404",
    14: "field 'lead_id': missing",
    15: "field 'occurred_at'",
}


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "crm-export.jsonl"
    path.write_text("\n".join(GOOD_AND_BAD) + "\n")
    return path


def test_each_bad_line_is_reported_and_the_good_lines_are_kept(engine: Engine, jsonl: Path) -> None:
    report = ingest_jsonl(engine, jsonl, actor="tester", batch_lines=4)
    assert {r.line: r.reason for r in report.rejected}.keys() == EXPECTED_REJECTIONS.keys()
    for r in report.rejected:
        assert EXPECTED_REJECTIONS[r.line] in r.reason, (r.line, r.reason)
    assert (report.lines, report.recorded, report.duplicates) == (15, 5, 0)
    assert report.events == 6  # the deal_opened line also converts its lead
    deal = engine.deal("D-1")
    assert (deal.stage, str(deal.amount)) == ("closed_won", "5200")
    assert [e.source for e in engine.history("D-1")] == ["crm-export.jsonl"] * 3
    assert {e.actor for e in engine.history("D-1")} == {"tester"}


def test_re_ingesting_a_file_records_nothing_new(engine: Engine, jsonl: Path) -> None:
    ingest_jsonl(engine, jsonl, actor="tester")
    position = engine.store.position()
    again = ingest_jsonl(engine, jsonl, actor="tester")
    assert (again.recorded, again.events, again.duplicates) == (0, 0, 5)
    assert engine.store.position() == position


def test_lines_without_an_id_are_deduplicated_by_content(
    memory_engine: Engine, tmp_path: Path
) -> None:
    line = '{"type": "site_visited", "lead_id": "L-1", "occurred_at": "2026-03-01T10:00:00Z", "channel": "web"}'
    path = tmp_path / "visits.jsonl"
    path.write_text(f"{line}\n{line}\n")
    report = ingest_jsonl(memory_engine, path, actor="t")
    assert (report.recorded, report.duplicates) == (1, 1)
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_text(line + "\n")
    assert ingest_jsonl(memory_engine, renamed, actor="t").duplicates == 1


def test_a_line_with_an_invalid_utf8_byte_is_rejected_naming_where(
    memory_engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "latin1.jsonl"
    bad = GOOD_AND_BAD[4].replace("ad_viewed", "ad_v\xefewed").encode("latin-1")
    path.write_bytes(b"\n".join([GOOD_AND_BAD[0].encode(), bad, GOOD_AND_BAD[5].encode()]))
    report = ingest_jsonl(memory_engine, path, actor="t")
    assert [(r.line, r.reason) for r in report.rejected] == [
        (2, "not valid utf-8: byte 0xef at byte offset 14")
    ]
    assert report.recorded == 2


def test_strict_stops_at_the_first_bad_line_and_stores_nothing(engine: Engine, jsonl: Path) -> None:
    report = ingest_jsonl(engine, jsonl, actor="tester", strict=True)
    assert [(r.line, EXPECTED_REJECTIONS[r.line] in r.reason) for r in report.rejected] == [
        (2, True)
    ]
    assert engine.store.position() == 0


def test_strict_names_a_refused_line_before_an_unparsable_one(
    memory_engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text("\n".join([GOOD_AND_BAD[0], GOOD_AND_BAD[11], GOOD_AND_BAD[1]]) + "\n")
    report = ingest_jsonl(memory_engine, path, actor="t", strict=True)
    assert [r.line for r in report.rejected] == [2]
    assert "unknown lead L-404" in report.rejected[0].reason
    assert memory_engine.store.position() == 0


def test_strict_stores_a_clean_file_whole(memory_engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "clean.jsonl"
    path.write_text("\n".join(GOOD_AND_BAD[i] for i in (0, 5, 8, 9, 15)) + "\n")
    report = ingest_jsonl(memory_engine, path, actor="t", strict=True)
    assert (report.rejected, report.recorded, report.events) == ([], 5, 6)
    assert memory_engine.deal("D-1").stage == "closed_won"


def test_the_cli_reports_bad_lines_one_per_line_and_exits_non_zero(
    tmp_path: Path, jsonl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["ingest", str(jsonl), "--format", "json"])
    assert result.exit_code == 1
    out = orjson.loads(result.stdout)
    assert [r["line"] for r in out["rejected"]] == sorted(EXPECTED_REJECTIONS)
    assert (out["recorded"], out["events"]) == (5, 6)
    again = CliRunner().invoke(app, ["ingest", str(jsonl), "--format", "json"])
    assert orjson.loads(again.stdout)["duplicates"] == 5
    table = CliRunner().invoke(app, ["ingest", str(jsonl)])
    assert f"{jsonl}:12: unknown lead L-404" in table.stderr
    missing = CliRunner().invoke(app, ["ingest", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 1
    assert missing.stderr.count("\n") == 1 and "error:" in missing.stderr
    assert Engine(Settings()).store.position() == 6
