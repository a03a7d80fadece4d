"""A scenario's funnel and pipeline as overlays on the baseline's (whatif/overlay.py): only the
leads and deals the scenario changes are folded again (a scenario that scales amounts folds its
pipeline whole).

Two checks: every kind of stream change gives what a lane folding every lead again gives
(in one process and split over processes); and where a scenario is a plain edit of the history,
its views are those of a store that recorded the edited history.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dealengine import Engine, Settings
from dealengine.demo import generate
from dealengine.whatif import run
from dealengine.whatif.run import Job, run_what_if
from tests.test_whatif_store import HYPOTHETICAL, ingest

NOW = datetime(2027, 1, 1, tzinfo=UTC)
LINES = generate(600, 7)
CLOSED = {x["deal_id"] for x in LINES if x["type"] in ("deal_won", "deal_lost")}
OPEN_DEAL = next(x for x in LINES if x["type"] == "deal_opened" and x["deal_id"] not in CLOSED)
A_LEAD_WITHOUT_DEAL = next(
    x["lead_id"]
    for x in LINES
    if x["type"] == "site_visited"
    and not any(y["type"] == "deal_opened" and y["lead_id"] == x["lead_id"] for y in LINES)
)

STREAM_CHANGES: list[dict[str, Any]] = [
    {"name": "lost after", "transform": {"lost_after_days": 20}},
    {"name": "lost in discovery", "transform": {"lost_after_days": {"discovery": 10}}},
    {"name": "scaled", "transform": {"scale_amounts": 0.5}},
    {"name": "no webinars", "transform": {"drop": ["webinar_attended"]}},
    {"name": "no openings", "transform": {"drop": ["deal_opened"]}},
    {"name": "no wins", "transform": {"drop": ["deal_won"]}},
    {"name": "spring", "filter": {"from": "2026-03-01", "to": "2026-06-30"}},
    {"name": "without ana", "filter": {"except": {"owners": ["ana"]}}},
    {"name": "only dara", "filter": {"only": {"owners": ["dara"]}}},
    {"name": "interest later", "transform": {"shift": [{"step": "interest", "days": 40}]}},
    {"name": "proposals sooner", "transform": {"shift": [{"stage": "proposal", "days": -3}]}},
    {"name": "wins later", "transform": {"shift": [{"events": ["deal_won"], "days": 400}]}},
    HYPOTHETICAL,
    {
        "name": "recorded aggregates",
        "events": [
            {"type": "deal_won", "deal_id": OPEN_DEAL["deal_id"], "occurred_at": "2026-12-01T09:00:00Z"},
            {"type": "webinar_attended", "lead_id": A_LEAD_WITHOUT_DEAL,
             "occurred_at": "2026-01-01T09:00:00Z", "webinar": "pipeline-101"},
            {"type": "ad_viewed", "lead_id": A_LEAD_WITHOUT_DEAL,
             "occurred_at": "2025-12-01T09:00:00Z", "channel": "social", "campaign": "early"},
        ],
    },
    {"name": "ordered, lost", "funnel": {"mode": "ordered", "conversion_window_days": 30},
     "transform": {"lost_after_days": 30}},
    {"name": "strict, no demos", "funnel": {"mode": "strict"},
     "transform": {"drop": ["demo_requested"]}},
    {"name": "excluded, scaled", "funnel": {"exclusions": ["lead_disqualified"]},
     "transform": {"scale_amounts": 3}},
    # the funnel reads the amounts it scales: its leads with deals change
    {"name": "by amount, scaled", "funnel": {"breakdowns": ["amount"]},
     "transform": {"scale_amounts": 2}},
    {"name": "last touch, lost", "funnel": {"attribution": "last_touch"},
     "transform": {"lost_after_days": 45}},
    {"name": "own as-of", "as_of": "2026-08-01", "transform": {"lost_after_days": 15}},
]  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    path = tmp_path_factory.mktemp("overlay") / "store.db"
    settings = Settings(db=str(path), database_url=None)
    with Engine(settings, clock=lambda: NOW) as writer:
        ingest(writer, LINES)
    return settings.model_copy(update={"read_only": True})


@pytest.mark.parametrize("processes", [1, 2, 3])
@pytest.mark.parametrize("as_of", [None, datetime(2026, 7, 15, tzinfo=UTC)])
def test_overlays_equal_folding_every_lead_again(
    store: Settings, processes: int, as_of: datetime | None
) -> None:
    settings = store.model_copy(update={"rebuild_processes": processes})
    with Engine(settings, clock=lambda: NOW) as engine:
        runs = [
            run_what_if(
                engine, STREAM_CHANGES, engine.passes.over_partitions, as_of=as_of, overlays=o
            )
            for o in (True, False)
        ]
    overlaid, folded_again = (r.model_dump(mode="json") for r in runs)
    assert overlaid == folded_again
    # the scenarios do change things, and differently
    changed = {
        name: s["funnel"]["steps"] != overlaid["baseline"]["funnel"]["steps"]
        for name, s in overlaid["scenarios"].items()
    }
    assert changed["lost after"] and changed["no webinars"] and changed["hypothetical"]
    assert not changed["scaled"]  # the funnel does not read amounts
    amounts = set(overlaid["scenarios"]["by amount, scaled"]["funnel"]["breakdowns"]["amount"])
    recorded = {Decimal(x["amount"]) for x in LINES if "amount" in x}
    assert amounts - {"unknown"} and {Decimal(a) / 2 for a in amounts - {"unknown"}} <= recorded
    base = overlaid["baseline"]["pipeline"]
    moved = {
        name: {k for k in ("stages", "won", "lost", "stale") if s["pipeline"][k] != base[k]}
        for name, s in overlaid["scenarios"].items()
    }
    assert moved["lost after"] >= {"stages", "lost"}
    assert moved["lost in discovery"] >= {"stages", "lost"}
    assert moved["hypothetical"] >= {"won"}
    if as_of is None:  # the win it adds to a recorded deal is after the as-of
        assert moved["recorded aggregates"] >= {"stages", "won"}
    assert moved["without ana"] and moved["no wins"] and moved["proposals sooner"]
    assert not moved["no webinars"]  # a lead's event: the pipeline is the baseline's


PROBABILITIES = {"pipelines": {"new_business": {"stages": {"discovery": {"probability": 0.3}}}}}
STALE = {"pipelines": {"new_business": {"stages": {"discovery": {"stale_after_days": 10}}}}}
MIXES: dict[str, list[dict[str, Any]]] = {
    "pipeline rules": [{"name": "probabilities", **PROBABILITIES}, {"name": "stale", **STALE}],
    "examples": [
        {"name": "thirty days", "funnel": {"mode": "ordered", "conversion_window_days": 30}},
        {"name": "no social", "filter": {"except": {"channels": ["paid_social"]}}},
        {"name": "probabilities", **PROBABILITIES},
    ],
    "own streams": [
        {"name": "lost after", "transform": {"lost_after_days": 45}},
        HYPOTHETICAL,
        {"name": "discount", "transform": {"scale_amounts": 0.9}},
        {"name": "discount, stale", "transform": {"scale_amounts": 0.9}, **STALE},
    ],
}


@pytest.mark.parametrize("processes", [2, 3])
@pytest.mark.parametrize("mix", list(MIXES))
def test_no_pipeline_state_is_folded_over_every_deal_in_two_partitions(
    store: Settings, processes: int, mix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition folds the pipeline states its reports read over every deal: the reports
    that read a state in common (an overlay's and the baseline's, two definitions' on one
    state) are made in one partition, each report in exactly one, the same views as in one
    process."""
    log = tmp_path / "placed.jsonl"
    placed = run._pipelines_here

    def placed_and_logged(jobs: list[Job], part: tuple[int, int] | None) -> list[Job]:
        mine = placed(jobs, part)
        # partition 0 also folds whole the states the reports on selected leads read
        selecting = [j for j in jobs if run._selection_key(j.plan) and part and part[0] == 0]
        with log.open("a") as f:  # a forked partition tells the test through the file
            line = {
                "part": part,
                "reports": [repr(run._pipeline_report_key(job)) for job in mine],
                "states": sorted({repr(s) for j in mine + selecting for s in run._states_read(j)}),
                "every report": sorted({repr(run._pipeline_report_key(j)) for j in jobs
                                        if not run._selection_key(j.plan)}),
            }  # fmt: skip
            f.write(json.dumps(line) + "\n")
        return mine

    monkeypatch.setattr(run, "_pipelines_here", placed_and_logged)
    views = []
    for n in (processes, 1):
        with Engine(store.model_copy(update={"rebuild_processes": n}), clock=lambda: NOW) as e:
            views.append(e.what_ifs(MIXES[mix]).model_dump(mode="json"))
    assert views[0] == views[1]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    parts = sorted((x for x in lines if x["part"] is not None), key=lambda x: x["part"])
    assert [x["part"] for x in parts] == [[i, processes] for i in range(processes)]
    reports = [r for x in parts for r in x["reports"]]
    assert sorted(reports) == parts[0]["every report"]  # each made once
    states = [s for x in parts for s in x["states"]]
    assert len(states) == len(set(states))  # no state in two partitions
    if mix == "own streams":  # elsewhere every report reads the baseline's state
        assert sum(1 for x in parts if x["reports"]) >= 2  # the discounts' go elsewhere


def _edited(name: str, lines: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A scenario and the history it describes, written out by hand."""
    deals_of_ana = {
        x["deal_id"] for x in lines if x["type"] == "deal_opened" and x["owner"] == "ana"
    }
    added = HYPOTHETICAL["events"]
    edits: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
        "drop": (
            {"transform": {"drop": ["webinar_attended", "deal_amount_changed"]}},
            [x for x in lines if x["type"] not in ("webinar_attended", "deal_amount_changed")],
        ),
        "until": (
            {"filter": {"to": "2026-06-30"}},
            [x for x in lines if x["occurred_at"] <= "2026-06-30T23:59:59.999999Z"],
        ),
        "owners": (
            {"filter": {"except": {"owners": ["ana"]}}},
            [x for x in lines if x.get("deal_id") not in deals_of_ana],
        ),
        "scale": (
            {"transform": {"scale_amounts": 0.25}},
            [
                {**x, "amount": str(Decimal(x["amount"]) * Decimal("0.25"))} if "amount" in x else x
                for x in lines
            ],
        ),
        "added": ({"events": added}, [*lines, *added]),
    }  # fmt: skip
    scenario, history = edits[name]
    return {"name": name, **scenario}, history


@pytest.mark.parametrize("name", ["drop", "until", "owners", "scale", "added"])
def test_a_scenario_shows_what_the_edited_history_would_have_shown(
    store: Settings, name: str
) -> None:
    scenario, history = _edited(name, LINES)
    with Engine.in_memory(clock=lambda: NOW) as recorded:
        ingest(recorded, history)
        funnel, pipeline = recorded.views()
    with Engine(store.model_copy(update={"rebuild_processes": 2}), clock=lambda: NOW) as engine:
        what_if = engine.what_if(scenario)
    result = what_if[name]
    assert result.funnel == funnel
    assert result.pipeline.model_dump() == pipeline.model_dump()  # amounts compared as numbers
    assert result.funnel != what_if.baseline.funnel or name == "scale"
    assert result.pipeline != what_if.baseline.pipeline


def test_the_history_edits_are_what_they_say(tmp_path: Path) -> None:
    """The reference histories above are valid histories (every line stored)."""
    for name in ("drop", "until", "owners", "scale", "added"):
        _, history = _edited(name, LINES)
        assert len(history) < len(LINES) or name in ("scale", "added")
        with Engine.in_memory(clock=lambda: NOW) as engine:
            ingest(engine, history)  # asserts that nothing was refused
