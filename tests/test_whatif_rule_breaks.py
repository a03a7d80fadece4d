"""A what-if whose window or `drop` leaves a history the stage rules would refuse says how
many leads and deals that touches (issue 18, item 11); split over processes or not."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dealengine import Engine, Settings
from dealengine.cli import app

# A: touched in April, qualified in May, its deal opened in May and won in June.
# B: touched and qualified in May. C: touched in June only.
HISTORY = [
    ("site_visited", "A", "2026-04-20", {"channel": "web"}),
    ("lead_qualified", "A", "2026-05-02", {"by": "sdr"}),
    ("deal_opened", "D-A", "2026-05-03", {"lead_id": "A", "amount": "100", "owner": "ana"}),
    ("deal_won", "D-A", "2026-06-02", {}),
    ("site_visited", "B", "2026-05-05", {"channel": "web"}),
    ("lead_qualified", "B", "2026-05-06", {"by": "sdr"}),
    ("site_visited", "C", "2026-06-01", {"channel": "web"}),
]


def record(engine: Engine) -> None:
    for event_type, target, day, fields in HISTORY:
        engine.record(event_type, target, f"{day}T12:00:00Z", **fields)


@pytest.mark.parametrize(
    ("scenario", "leads", "deals"),
    [
        ({"filter": {"from": "2026-05-01"}}, 1, 0),  # A's first kept: its qualification
        ({"filter": {"from": "2026-06-01"}}, 0, 1),  # D-A's first kept: deal_won
        ({"transform": {"drop": ["site_visited"]}}, 2, 0),  # A and B start qualified
        ({"transform": {"drop": ["deal_opened"]}}, 0, 1),
        ({"filter": {"to": "2026-06-30"}}, 0, 0),  # leaves nothing out at the start
    ],
)
@pytest.mark.parametrize("processes", [1, 2])
def test_rule_breaks_are_counted(
    tmp_path: Path, scenario: dict[str, object], leads: int, deals: int, processes: int
) -> None:
    settings = Settings(db=str(tmp_path / "s.db"), database_url=None,
                        rebuild_processes=processes)  # fmt: skip
    with Engine(settings) as engine:
        record(engine)
        result = engine.what_if({"name": "s", **scenario})
    broken = result["s"].rule_breaks
    assert broken is not None and (broken.leads, broken.deals) == (leads, deals)


def test_a_scenario_leaving_nothing_out_has_none(memory_engine: Engine) -> None:
    record(memory_engine)
    result = memory_engine.what_if({"name": "s", "funnel": {"mode": "ordered"}})
    assert result["s"].rule_breaks is None


def test_whatif_says_so_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    with Engine(Settings()) as engine:
        record(engine)
    scenario = tmp_path / "may.toml"
    scenario.write_text('[filter]\nfrom = "2026-05-01"\n')
    result = CliRunner().invoke(app, ["whatif", str(scenario)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "stage rules would refuse" in line]
    assert len(lines) == 1 and "may: 1 leads and 0 deals" in lines[0]
