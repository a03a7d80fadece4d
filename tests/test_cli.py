"""The CLI: both views from the demo, JSON shapes for programs, one-line errors for people."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dealengine.cli import app


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    return CliRunner()


def test_demo_records_a_history_and_shows_both_views(cli: CliRunner) -> None:
    result = cli.invoke(app, ["demo", "--leads", "300"])
    assert result.exit_code == 0, result.output
    assert "funnel (reached): 300 leads" in result.stdout
    assert "pipeline new_business" in result.stdout and "win rate" in result.stdout
    again = cli.invoke(app, ["demo", "--leads", "300"])
    assert (
        "recorded 0 events" in again.stderr
    )  # the demo's lines carry ids: nothing is recorded twice


def test_json_shapes(cli: CliRunner) -> None:
    cli.invoke(app, ["demo", "--leads", "300"])
    funnel = orjson.loads(cli.invoke(app, ["funnel", "--format", "json"]).stdout)
    assert [s["name"] for s in funnel["steps"]][:2] == ["awareness", "interest"]
    assert funnel["steps"][0]["leads"] == 300
    assert set(funnel["steps"][0]) >= {
        "name",
        "leads",
        "conversion_from_previous",
        "conversion_from_first",
    }
    assert set(funnel["by_channel"]["paid_search"]) == {"steps"}
    assert sum(c["steps"][0]["leads"] for c in funnel["by_channel"].values()) == 300

    pipeline = orjson.loads(cli.invoke(app, ["pipeline", "--format", "json"]).stdout)
    assert [s["name"] for s in pipeline["stages"]] == [
        "prospecting",
        "discovery",
        "proposal",
        "negotiation",
    ]
    assert set(pipeline["stages"][0]) >= {"name", "open_deals", "amount", "weighted_amount"}
    assert (
        isinstance(pipeline["stages"][0]["amount"], str) and "." in pipeline["stages"][0]["amount"]
    )
    closed = {"deals", "amount", "amounts_by_currency", "unconverted"}
    assert set(pipeline["won"]) == closed and set(pipeline["lost"]) == closed
    assert 0 <= pipeline["win_rate"] <= 1

    history = orjson.loads(cli.invoke(app, ["history", "L-000001", "--format", "json"]).stdout)
    assert history[0]["type"] in ("ad_viewed", "site_visited")
    assert [e["originator_version"] for e in history] == list(range(1, len(history) + 1))
    assert {"occurred_at", "recorded_at", "actor", "source", "id"} <= set(history[0])


def test_history_table_shows_every_event(cli: CliRunner) -> None:
    cli.invoke(app, ["demo", "--leads", "50"])
    result = cli.invoke(app, ["history", "lead:L-000001"])
    assert result.exit_code == 0 and "history of lead:L-000001" in result.stdout
    assert "demo-seed-7" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["history", "L-404"], {}, "error: unknown lead or deal L-404"),
        (
            ["funnel"],
            {"DEALENGINE_DATABASE_URL": "mysql://x/y"},
            "DEALENGINE_DATABASE_URL must look like",
        ),
        (
            ["pipeline"],
            {"DEALENGINE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
            "error:",
        ),
    ],
)
def test_errors_are_one_line_and_a_non_zero_exit(
    cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = cli.invoke(app, args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_json_logs_for_machines(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(
        '{"type": "site_visited", "lead_id": "L-1", "occurred_at": "2026-01-01T00:00:00Z", "channel": "x"}\n'
    )
    result = cli.invoke(app, ["--log-format", "json", "--log-level", "info", "ingest", str(path)])
    assert result.exit_code == 0
    logs = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert logs and logs[0]["event"] == "ingest.batch" and logs[0]["events"] == 1


def test_funnel_and_pipeline_options(cli: CliRunner, tmp_path: Path) -> None:
    lines = [
        '{"type": "ad_viewed", "lead_id": "A", "occurred_at": "2026-01-01T10:00:00Z", "channel": "social", "campaign": "c1"}',
        '{"type": "demo_requested", "lead_id": "A", "occurred_at": "2026-01-02T10:00:00Z"}',
        '{"type": "newsletter_signed_up", "lead_id": "A", "occurred_at": "2026-01-03T10:00:00Z"}',
        '{"type": "lead_qualified", "lead_id": "A", "occurred_at": "2026-01-04T10:00:00Z", "by": "x"}',
        '{"type": "deal_opened", "deal_id": "D", "lead_id": "A", "occurred_at": "2026-01-05T10:00:00Z", "amount": "100", "owner": "ana"}',
        '{"type": "negotiation_started", "deal_id": "D", "occurred_at": "2026-01-07T10:00:00Z"}',
        '{"type": "deal_won", "deal_id": "D", "occurred_at": "2026-02-10T10:00:00Z"}',
    ]
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert cli.invoke(app, ["ingest", str(path)]).exit_code == 0

    def funnel(*args: str) -> list[int]:
        out = orjson.loads(cli.invoke(app, ["funnel", "--format", "json", *args]).stdout)
        return [s["leads"] for s in out["steps"]]

    assert funnel() == [1, 1, 1, 1, 1, 1, 1]
    assert funnel("--mode", "ordered") == [1, 1, 0, 0, 0, 0, 0]
    assert funnel("--as-of", "2026-01-03") == [1, 1, 1, 1, 0, 0, 0]
    assert funnel("--exclude", "deal_lost") == [1, 1, 1, 1, 1, 1, 1]
    refused = cli.invoke(app, ["funnel", "--exclude", "lead_qualified"])
    assert refused.exit_code == 1 and "also an exclusion" in refused.stderr
    out = orjson.loads(
        cli.invoke(
            app, ["funnel", "--format", "json", "--breakdown", "campaign", "--cohort", "week"]
        ).stdout
    )
    assert list(out["breakdowns"]["campaign"]) == ["c1"] and list(out["cohorts"]) == ["2026-W01"]
    assert out["time_to_convert"][-1]["median_days"] == 40.0  # ad on 1 Jan -> won on 10 Feb

    pipeline = orjson.loads(
        cli.invoke(app, ["pipeline", "--format", "json", "--as-of", "2026-01-31T00:00:00Z"]).stdout
    )
    assert [s["open_deals"] for s in pipeline["stages"]] == [0, 0, 0, 1]
    assert pipeline["stale"][0]["deal_id"] == "D"  # 24 days idle in negotiation, limit 14
    moved = orjson.loads(
        cli.invoke(
            app, ["pipeline", "--changes", "2026-01-06", "2026-02-28", "--format", "json"]
        ).stdout
    )
    assert (
        moved["open_at_start"]["amount"],
        moved["won"]["amount"],
        moved["open_at_end"]["deals"],
    ) == ("100.00", "100.00", 0)
    deals = orjson.loads(cli.invoke(app, ["pipeline", "--deals", "--format", "json"]).stdout)
    assert [s["stage"] for s in deals[0]["stays"]] == ["prospecting", "negotiation", "closed_won"]
    table = cli.invoke(app, ["pipeline", "--changes", "2026-01-06", "2026-02-28"])
    assert "open at end" in table.stdout
    bad = cli.invoke(app, ["pipeline", "--as-of", "soon"])
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1 and "not a date or time" in bad.stderr
    bad_mode = cli.invoke(app, ["funnel", "--window", "-3"])
    assert bad_mode.exit_code == 1 and "conversion_window_days" in bad_mode.stderr


def test_plain_output_shows_data_as_it_is(cli: CliRunner, tmp_path: Path) -> None:
    """Given ids, channels and a file name that look like Rich markup or emoji codes, when the
    CLI prints them (rejected lines, tables, history, findings), then they show as they are."""
    visits = [
        {"type": "site_visited", "lead_id": f"L-{n}", "occurred_at": "2026-03-01T09:00:00Z",
         "channel": channel}
        for n, channel in enumerate(["[red]x[/red]", ":thumbs_up:"] * 617, start=1)
    ]  # fmt: skip
    lines = [orjson.dumps(v).decode() for v in visits]
    lines[99] = lines[1233] = "{"
    for day in ("02", "03", "04"):
        lines.append(orjson.dumps({**visits[0], "lead_id": "A:fire:1", "occurred_at": f"2026-03-{day}T09:00:00Z"}).decode())  # fmt: skip
    export = tmp_path / "export[bold].jsonl"
    export.write_text("\n".join(lines) + "\n")
    ingested = cli.invoke(app, ["ingest", str(export)])
    assert ingested.exit_code == 1
    assert f"{export}:100: not valid JSON" in ingested.stderr
    assert f"{export}:1234: not valid JSON" in ingested.stderr
    assert f"{export}: 1237 lines: 1235 interactions recorded" in ingested.stderr
    funnel = cli.invoke(app, ["funnel"]).stdout
    assert "[red]x[/red]" in funnel and ":thumbs_up:" in funnel
    history = cli.invoke(app, ["history", "lead:A:fire:1"]).stdout
    assert "history of lead:A:fire:1" in history
    unknown = cli.invoke(app, ["history", "[report]"])
    assert unknown.stderr == "error: unknown lead or deal [report]\n"
    with sqlite3.connect(tmp_path / "cli.db") as db:
        db.execute("DELETE FROM stored_events WHERE originator_id = 'lead:A:fire:1' AND originator_version = 2")  # fmt: skip
    found = cli.invoke(app, ["verify"])
    assert found.exit_code == 1 and found.stdout.startswith("lead:A:fire:1 v"), found.stdout
