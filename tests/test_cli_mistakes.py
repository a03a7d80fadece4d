"""Mistakes a user makes at the command line end in one line naming the mistake and exit
status 1, never in an empty result and exit 0 (issue 18, items 4 and 8)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dealengine.cli import app

VISIT = {"type": "site_visited", "lead_id": "L-1", "occurred_at": "2026-03-01T09:00:00Z",
         "channel": "web"}  # fmt: skip


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    return CliRunner()


def jsonl(path: Path, *lines: dict[str, object]) -> Path:
    path.write_text("".join(orjson.dumps(line).decode() + "\n" for line in lines))
    return path


def one_line_error(result: object, *parts: str) -> None:
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    for part in parts:
        assert part in stderr, (part, stderr)


def test_a_breakdown_by_a_field_no_event_carries(cli: CliRunner, tmp_path: Path) -> None:
    """Given a store, when the funnel is broken down by a field no event type carries, then
    it is an error naming the known fields (not every lead under `unknown`)."""
    cli.invoke(app, ["ingest", str(jsonl(tmp_path / "a.jsonl", VISIT))])
    result = cli.invoke(app, ["funnel", "--breakdown", "nosuchfield"])
    one_line_error(result, "--breakdown nosuchfield", "campaign", "channel", "segment")
    assert cli.invoke(app, ["funnel", "--breakdown", "channel"]).exit_code == 0


def test_a_store_in_a_folder_that_does_not_exist(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given DEALENGINE_DB in a folder that does not exist (a typo), then it is an error
    naming the folder, and nothing is created."""
    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv("DEALENGINE_DB", str(missing / "store.db"))
    one_line_error(cli.invoke(app, ["funnel"]), f"no folder {missing}", "mkdir -p")
    assert not missing.exists()


def test_info_names_the_store_definitions_and_events(cli: CliRunner, tmp_path: Path) -> None:
    cli.invoke(app, ["ingest", str(jsonl(tmp_path / "a.jsonl", VISIT))])
    shown = cli.invoke(app, ["info"])
    assert shown.exit_code == 0, shown.output
    assert f"store: {tmp_path / 'cli.db'}" in shown.stdout and "events: 1" in shown.stdout
    data = orjson.loads(cli.invoke(app, ["info", "--format", "json"]).stdout)
    assert data["definitions"].endswith("projections") and len(data["funnel_digest"]) == 16
    assert data["pipelines"][0] == "new_business" and data["events"] == 1


def test_info_never_shows_a_password(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    url = os.environ.get(
        "DEALENGINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    with_password = url.replace("postgres@", "postgres:s3cret@", 1)
    monkeypatch.setenv("DEALENGINE_DATABASE_URL", with_password)
    result = cli.invoke(app, ["info"])
    assert "s3cret" not in result.output
    # a server with trust authentication ignores the password; without a server: one line
    assert "postgres:***@" in result.stdout or "cannot connect" in result.stderr


def test_an_empty_file_is_not_a_success(cli: CliRunner, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = cli.invoke(app, ["ingest", str(empty)])
    assert result.exit_code == 1 and f"warning: {empty}: no lines" in result.stderr


def test_an_empty_scenario_file(cli: CliRunner, tmp_path: Path) -> None:
    cli.invoke(app, ["ingest", str(jsonl(tmp_path / "a.jsonl", VISIT))])
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing yet\n")
    one_line_error(cli.invoke(app, ["whatif", str(empty)]), str(empty), "an empty scenario")


def test_a_deal_won_before_it_was_opened_is_rejected(cli: CliRunner, tmp_path: Path) -> None:
    lines = jsonl(
        tmp_path / "deal.jsonl",
        VISIT,
        {"type": "lead_qualified", "lead_id": "L-1", "occurred_at": "2026-03-02T09:00:00Z",
         "by": "sdr"},
        {"type": "deal_opened", "deal_id": "D-1", "lead_id": "L-1",
         "occurred_at": "2026-03-10T09:00:00Z", "amount": "100", "owner": "ana"},
        {"type": "deal_won", "deal_id": "D-1", "occurred_at": "2026-03-05T09:00:00Z"},
    )  # fmt: skip
    result = cli.invoke(app, ["ingest", str(lines)])
    assert result.exit_code == 1
    assert f"{lines}:4: deal D-1 is in 'prospecting': deal_won refused" in result.stderr
    assert "2026-03-05T09:00:00" in result.stderr and "2026-03-10T09:00:00" in result.stderr


@pytest.mark.parametrize(
    "url",
    ["postgresql://ana:s3cret@db.example:x/sales", "mysql://ana:s3cret@db.example/sales",
     "postgresql://ana:s3cret@db.example:5432"],
)  # fmt: skip
def test_a_malformed_database_url_never_shows_its_password(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DEALENGINE_DATABASE_URL", url)
    result = cli.invoke(app, ["funnel"])
    one_line_error(result, "DEALENGINE_DATABASE_URL must look like", "ana:***@db.example")
    assert "s3cret" not in result.output


def test_a_store_folder_that_is_not_writable(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a store file to create in a folder this user cannot write (emulated: the tests may
    run as root), then the error names the path and the reason."""
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setenv("DEALENGINE_DB", str(locked / "store.db"))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    one_line_error(cli.invoke(app, ["funnel"]), f"{locked / 'store.db'}", "not writable")


def test_a_store_path_that_is_a_folder(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path))
    one_line_error(cli.invoke(app, ["funnel"]), f"cannot open the store {tmp_path}", "folder")
