"""Ctrl-C during a long ingest says what was stored, that the store is intact and how to
resume, and exits 130 (issue 18, item 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from dealengine.cli import app
from dealengine.engine import Engine

LINES = 4500  # three batches of ingest's 2,000 lines


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    return CliRunner()


def test_ctrl_c_during_an_ingest(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a long file, when the user presses Ctrl-C while the third batch is stored, then
    one line says the first two batches' lines are stored and the store intact, the exit
    status is 130; and the same command again records the rest, skipping what was stored."""
    path = tmp_path / "long.jsonl"
    path.write_text("".join(
        orjson.dumps({"type": "site_visited", "lead_id": f"L-{n}",
                      "occurred_at": "2026-03-01T09:00:00Z", "channel": "web"}).decode() + "\n"
        for n in range(1, LINES + 1)
    ))  # fmt: skip
    real = Engine.execute_batch
    calls = []

    def interrupted_on_the_third(self: Engine, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "execute_batch", interrupted_on_the_third)
    result = cli.invoke(app, ["ingest", str(path)])
    assert result.exit_code == 130
    assert result.stderr == (
        f"interrupted: {path}: lines 1-4000 stored (4000 interactions recorded, 0 already "
        "recorded); the store is intact (a batch is stored whole or not at all); run the same "
        "command again to resume: lines already stored are skipped by their idempotency keys\n"
    )
    monkeypatch.setattr(Engine, "execute_batch", real)
    again = cli.invoke(app, ["ingest", str(path)])
    assert again.exit_code == 0, again.stderr
    assert f": {LINES} lines: 500 interactions recorded (500 events), 4000 already" in again.stderr
