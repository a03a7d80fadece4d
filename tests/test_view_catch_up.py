"""A long catch-up of a materialised view: applied in large batches, each stored with its
position; Ctrl-C keeps what was applied, says so, exits 130; the same command resumes from
there (issue 21, item 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from dealengine import Engine, Settings
from dealengine.cli import app
from dealengine.domain.lines import interaction_from
from dealengine.views.tables import ViewTables

LEADS = 1000
CHANNELS = ("web", "ads", "events")


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.setenv("DEALENGINE_VIEW_BATCH", "300")
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    with Engine(Settings(db=str(tmp_path / "cli.db"), database_url=None)) as engine:
        lines = [
            {"type": "site_visited", "lead_id": f"L-{n}", "channel": CHANNELS[n % 3],
             "occurred_at": "2026-03-01T09:00:00Z"}
            for n in range(LEADS)
        ] + [
            {"type": "demo_requested", "lead_id": f"L-{n}", "occurred_at": "2026-03-02T09:00:00Z"}
            for n in range(0, LEADS, 4)
        ]  # fmt: skip
        engine.execute_batch([interaction_from(line, "t", "t") for line in lines])
    return CliRunner()


def test_ctrl_c_during_a_catch_up_keeps_the_batches_applied_and_resumes(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given 1,250 events and batches of 300, when Ctrl-C comes while the third batch is being
    written, then one line says 600 events are kept, the exit status is 130, and the same
    command applies only the other 650; the funnel then counts every lead once."""
    real = ViewTables.write
    calls: list[int] = []

    def interrupted_on_the_third(self: ViewTables, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ViewTables, "write", interrupted_on_the_third)
    result = cli.invoke(app, ["project", "funnel"])
    assert result.exit_code == 130
    assert result.stderr == (
        "interrupted: the funnel view keeps the 600 events applied so far (each batch is "
        "stored with its position); run the same command again to resume from there\n"
    )
    monkeypatch.setattr(ViewTables, "write", real)
    again = cli.invoke(app, ["project", "funnel"])
    assert again.exit_code == 0, again.stderr
    assert again.stderr == "funnel: 650 events applied\n"
    shown = cli.invoke(app, ["funnel", "--format", "json"])
    funnel = orjson.loads(shown.stdout)
    assert [s["leads"] for s in funnel["steps"]][:1] == [LEADS]
    assert funnel["view"]["behind"] == 0
    by_channel = {c: b["steps"][0]["leads"] for c, b in funnel["by_channel"].items()}
    assert by_channel == {c: len(range(k, LEADS, 3)) for k, c in enumerate(CHANNELS)}


def test_the_first_query_catches_up_in_batches_of_the_configured_size(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given 1,250 events and batches of 300, the first `dealengine funnel` writes five
    batches, each with the position of its last event."""
    real = ViewTables.write
    positions: list[int] = []

    def recorded(self: ViewTables, view: str, counters: Any, tracking: Any) -> Any:
        positions.append(tracking.notification_id)
        return real(self, view, counters, tracking)

    monkeypatch.setattr(ViewTables, "write", recorded)
    shown = cli.invoke(app, ["funnel", "--format", "json"])
    assert shown.exit_code == 0, shown.stderr
    assert positions == [300, 600, 900, 1200, 1250]
