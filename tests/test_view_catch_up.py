"""A long catch-up of a materialised view: read and folded in large batches, then stored
with its position; Ctrl-C stops it after the batch it is folding and keeps what was applied,
says so, exits 130; the same command resumes from there (issue 21, item 1)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from dealengine import Engine, Settings
from dealengine.cli import app
from dealengine.domain.lines import interaction_from
from dealengine.views.materialised import Batch, FunnelAdapter
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


def test_ctrl_c_during_a_catch_up_keeps_the_batches_folded_and_resumes(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given 1,250 events and batches of 300, when Ctrl-C (a real SIGINT) comes while the
    third batch is being folded, then the run finishes that batch, stores the 900 events with
    their position (one write), one line says so, the exit status is 130, and the same
    command applies only the other 350; the funnel then counts every lead once."""
    real = FunnelAdapter.process
    batches: list[int] = []

    def interrupted_in_the_third(self: FunnelAdapter, batch: Batch, held: Any) -> None:
        batches.append(len(batch.rows))
        if len(batches) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # handled before the next bytecode: mid-batch
        real(self, batch, held)

    writes = recorded_writes(monkeypatch)
    monkeypatch.setattr(FunnelAdapter, "process", interrupted_in_the_third)
    result = cli.invoke(app, ["project", "funnel"])
    assert result.exit_code == 130
    assert result.stderr == (
        "interrupted: the funnel view keeps the 900 events applied so far (stored with their "
        "position); run the same command again to resume from there\n"
    )
    assert batches == [300, 300, 300] and writes == [900]
    monkeypatch.setattr(FunnelAdapter, "process", real)
    again = cli.invoke(app, ["project", "funnel"])
    assert again.exit_code == 0, again.stderr
    assert again.stderr == "funnel: 350 events applied\n"
    assert writes == [900, 1250]
    shown = cli.invoke(app, ["funnel", "--format", "json"])
    funnel = orjson.loads(shown.stdout)
    assert [s["leads"] for s in funnel["steps"]][:2] == [LEADS, LEADS // 4]
    assert funnel["view"]["behind"] == 0
    by_channel = {c: b["steps"][0]["leads"] for c, b in funnel["by_channel"].items()}
    assert by_channel == {c: len(range(k, LEADS, 3)) for k, c in enumerate(CHANNELS)}


def test_the_first_query_reads_in_batches_and_writes_once(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given 1,250 events and batches of 300, the first `dealengine funnel` reads five
    batches and writes the view once, with the position of the last event."""
    writes = recorded_writes(monkeypatch)
    reads: list[int] = []
    real = FunnelAdapter.process

    def counted(self: FunnelAdapter, batch: Batch, held: Any) -> None:
        reads.append(len(batch.rows))
        real(self, batch, held)

    monkeypatch.setattr(FunnelAdapter, "process", counted)
    shown = cli.invoke(app, ["funnel", "--format", "json"])
    assert shown.exit_code == 0, shown.stderr
    assert reads == [300, 300, 300, 300, 50] and writes == [1250]


def recorded_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The positions the views are written at, from now on."""
    real = ViewTables.write
    positions: list[int] = []

    def recorded(self: ViewTables, view: str, counters: Any, tracking: Any, **kw: Any) -> Any:
        real(self, view, counters, tracking, **kw)
        positions.append(tracking.notification_id)

    monkeypatch.setattr(ViewTables, "write", recorded)
    return positions
