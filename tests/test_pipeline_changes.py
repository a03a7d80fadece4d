"""The waterfall (`pipeline --changes FROM TO`, `engine.pipeline_changes`) and `--deals`
(issue 18, items 9 and 11): FROM is the start of its day and TO the end of its; won and lost
at the amounts deals closed with, their earlier amount changes under amount up and down; the
amounts add up; checked against a plain computation over a generated history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from dealengine import Engine
from dealengine.cli import app
from dealengine.demo import generate
from dealengine.domain.lines import interaction_from

MOVES = ("open_at_start", "new", "reopened", "amount_up", "amount_down", "won", "lost",
         "open_at_end")  # fmt: skip


def reference(lines: list[dict[str, Any]], start: str, end: str) -> dict[str, tuple[int, Decimal]]:
    """The waterfall by hand: each deal's (open?, won?, amount) just before `start` and at
    `end` (ISO times compared as text), then the rule of docs/pipeline-changes.md."""
    before: dict[str, tuple[bool, bool, Decimal]] = {}
    after: dict[str, tuple[bool, bool, Decimal]] = {}
    for line in lines:
        deal = line.get("deal_id")
        if deal is None or line["type"] == "lead_converted" or line["occurred_at"] > end:
            continue
        kind, was = line["type"], after.get(deal, (True, False, Decimal(0)))
        amount = Decimal(line["amount"]) if "amount" in line else was[2]
        if kind in ("deal_won", "deal_lost"):
            now = (False, kind == "deal_won", amount)
        elif kind == "deal_reopened":
            now = (True, False, amount)
        else:
            now = (was[0], was[1], amount)
        after[deal] = now
        if line["occurred_at"] < start:
            before[deal] = now
    totals = {m: [0, Decimal(0)] for m in MOVES}

    def add(move: str, amount: Decimal) -> None:
        totals[move][0] += 1
        totals[move][1] += amount

    for deal, (is_open, won, b) in after.items():
        then = before.get(deal)
        if then is not None and then[0]:
            add("open_at_start", then[2])
        if is_open:
            add("open_at_end", b)
        if then is None:
            add("new", b)
            if not is_open:
                add("won" if won else "lost", b)
        elif then[0] and not is_open:
            add("won" if won else "lost", b)
            if b != then[2]:
                add("amount_up" if b > then[2] else "amount_down", abs(b - then[2]))
        elif not then[0] and is_open:
            add("reopened", b)
        elif then[0] and is_open and b != then[2]:
            add("amount_up" if b > then[2] else "amount_down", abs(b - then[2]))
    return {m: (int(n), Decimal(a)) for m, (n, a) in totals.items()}


@pytest.mark.parametrize(
    ("start", "end"), [("2026-03-01", "2026-06-15"), ("2026-01-01", "2026-11-30"),
                       ("2026-07-10", "2026-07-11")],
)  # fmt: skip
def test_the_waterfall_matches_a_plain_computation_and_adds_up(start: str, end: str) -> None:
    lines = generate(1500, 11)
    first = f"{start}T00:00:00Z"
    last = f"{end}T23:59:59.999999Z"
    expected = reference(lines, first, last)
    with Engine.in_memory() as engine:
        outcomes = engine.execute_batch([interaction_from(x, "t", "t") for x in lines])
        assert not [o for o in outcomes if isinstance(o, Exception)]
        w = engine.pipeline_changes(datetime.fromisoformat(first), datetime.fromisoformat(last))
    got = {m: (getattr(w, m).deals, getattr(w, m).amount) for m in MOVES}
    assert got == expected
    a = {m: amount for m, (_, amount) in got.items()}
    assert (a["open_at_start"] + a["new"] + a["reopened"] + a["amount_up"] - a["amount_down"]
            - a["won"] - a["lost"]) == a["open_at_end"]  # fmt: skip
    if start == "2026-03-01":  # 3.5 months: deals open at FROM, then changed and closed
        assert expected["won"][0] > 0 and expected["amount_up"][0] + expected["amount_down"][0]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    runner = CliRunner()
    lines: list[dict[str, Any]] = []
    for n, (opened, closed, kind) in enumerate(
        [("2026-05-20T10:00:00Z", "2026-06-30T15:00:00Z", "deal_won"),
         ("2026-06-01T09:00:00Z", None, None),
         ("2026-06-02T09:00:00Z", "2026-06-10T09:00:00Z", "deal_lost")], start=1
    ):  # fmt: skip
        lead, deal = f"L-{n}", f"D-{4 - n}"  # deal ids in the opposite order
        lines += [
            {"type": "site_visited", "lead_id": lead, "occurred_at": "2026-05-01T09:00:00Z",
             "channel": "web"},
            {"type": "lead_qualified", "lead_id": lead, "occurred_at": "2026-05-02T09:00:00Z",
             "by": "sdr"},
            {"type": "deal_opened", "deal_id": deal, "lead_id": lead, "occurred_at": opened,
             "amount": "1000", "owner": "ana"},
        ]  # fmt: skip
        if kind == "deal_won":
            lines.append({"type": "deal_won", "deal_id": deal, "occurred_at": closed,
                          "amount": "1500"})  # fmt: skip
        elif kind:
            lines.append({"type": kind, "deal_id": deal, "occurred_at": closed, "reason": "x"})
    path = tmp_path / "h.jsonl"
    path.write_text("".join(orjson.dumps(line).decode() + "\n" for line in lines))
    assert runner.invoke(app, ["ingest", str(path)]).exit_code == 0
    return runner


def test_changes_from_the_start_of_from_to_the_end_of_to(cli: CliRunner) -> None:
    """Given a deal opened on 1 June and one won on 30 June, when the waterfall is asked from
    1 June to 30 June, then the first is new (not open at the start) and the second won, at
    the 1,500 it was won for (its 500 rise under amount up)."""
    got = orjson.loads(cli.invoke(
        app, ["pipeline", "--changes", "2026-06-01", "2026-06-30", "--format", "json"]
    ).stdout)  # fmt: skip
    assert got["start"].startswith("2026-06-01T00:00:00")
    assert (got["open_at_start"]["deals"], got["new"]["deals"]) == (1, 2)
    assert (got["won"]["deals"], got["won"]["amount"]) == (1, "1500.00")
    assert (got["amount_up"]["deals"], got["amount_up"]["amount"]) == (1, "500.00")
    assert (got["lost"]["deals"], got["open_at_end"]["deals"]) == (1, 1)


def test_deals_use_the_pipeline_tables_stage_names_in_stage_order(cli: CliRunner) -> None:
    table = cli.invoke(app, ["pipeline", "--deals"]).stdout
    assert "closed_won" not in table and "closed_lost" not in table
    rows = [line.split("│")[1:3] for line in table.splitlines() if "│ D-" in line]
    assert [(d.strip(), s.strip()) for d, s in rows] == [
        ("D-2", "prospecting"), ("D-3", "won"), ("D-1", "lost")]  # fmt: skip
    data = orjson.loads(cli.invoke(app, ["pipeline", "--deals", "--format", "json"]).stdout)
    assert [d["deal_id"] for d in data] == ["D-2", "D-3", "D-1"]  # the pipeline's stage order
