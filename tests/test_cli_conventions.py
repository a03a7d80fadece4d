"""What a user expects of any command line: --version, -h, completion, options in any order,
help without noise, and a quick start (issue 18, item 7)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dealengine.cli import app

COMMANDS = ["demo", "ingest", "funnel", "pipeline", "rebuild", "project", "history", "void", "forget",
            "verify", "seal", "audit", "report", "whatif", "info"]  # fmt: skip
HEAVY = ["psycopg", "pydantic", "eventsourcing", "plotly", "rich.table", "dealengine.engine",
         "dealengine.domain.events"]  # fmt: skip


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    return CliRunner()


def test_version(cli: CliRunner) -> None:
    from importlib.metadata import version

    result = cli.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"dealengine {version('dealengine')}\n"


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_dash_h_is_help_and_help_has_no_type_noise(cli: CliRunner, command: list[str]) -> None:
    """Given any command, when the user asks -h, then the help shows each option with the value
    it takes (FILE, DATE, NAME...), and a flag with none: no `<bool>`, `<str>`, `list[...]`."""
    short = cli.invoke(app, [*command, "-h"])
    assert short.exit_code == 0, short.output
    assert short.stdout == cli.invoke(app, [*command, "--help"]).stdout
    for noise in ("<bool>", "<str>", "<path>", "list[", "<float>", "str,str", "{"):
        assert noise not in short.stdout, (noise, short.stdout)


def test_shell_completion_is_offered(cli: CliRunner) -> None:
    assert "--install-completion" in cli.invoke(app, ["--help"]).stdout
    shown = cli.invoke(app, ["--show-completion", "bash"], prog_name="dealengine")
    assert shown.exit_code == 0 and "complete" in shown.stdout


def test_global_options_after_the_command(cli: CliRunner, tmp_path: Path) -> None:
    """Given `--log-format json --log-level info` after the command, they apply all the same."""
    path = tmp_path / "one.jsonl"
    path.write_text('{"type": "site_visited", "lead_id": "L-1", '
                    '"occurred_at": "2026-01-01T00:00:00Z", "channel": "x"}\n')  # fmt: skip
    result = cli.invoke(app, ["ingest", str(path), "--log-format", "json", "--log-level=info"])
    assert result.exit_code == 0, result.output
    assert '"event": "ingest.batch"' in result.stderr


def test_help_imports_no_engine_driver_models_or_charts() -> None:
    """`dealengine --help` starts quickly: it loads Typer only, not the store's driver, the
    event models, Rich's tables or Plotly (benchmarks/test_startup.py times it)."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "dealengine.cli", "--help"],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert not [m for m in HEAVY if m in loaded]
