"""Dump every view of a store as JSON, to show that a change of structure changes no number.

    python benchmarks/dump.py build STORE.db [--lines 100000]   # the seeded history, ingested
    python benchmarks/dump.py dump STORE.db OUT.json            # every view, mode, as-of, scenario

`dump` reads a copy of STORE.db (the materialised views write beside it) with a fixed clock, so
two dumps of the same store by two versions of the code are equal byte for byte when the views
are. It covers: the views, every funnel mode (and a window, an exclusion, breakdowns, weekly
cohorts), every pipeline, the deals' stays, the waterfall, the same as of a date, the live
(materialised) views, and every example scenario with and without an as-of.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from dealengine import Engine, Settings
from dealengine.demo import generate, write_jsonl
from dealengine.ingest.jsonl import ingest_jsonl

NOW = datetime(2027, 1, 1, tzinfo=UTC)
AS_OF = datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)
SCENARIOS = Path(__file__).resolve().parents[1] / "projections" / "scenarios"
FUNNELS: dict[str, dict[str, Any]] = {
    "reached": {},
    "ordered": {"mode": "ordered"},
    "strict": {"mode": "strict"},
    "ordered-30": {"mode": "ordered", "conversion_window_days": 30},
    "excluded": {"exclusions": ["lead_disqualified"]},
    "by-week": {"cohort": "week", "breakdowns": ["campaign", "page"]},
    "last-touch": {"attribution": "last_touch"},
}


def build(store: Path, lines: int) -> None:
    leads = lines * 2 // 5 + 10
    while len(history := generate(leads, 7)) < lines:
        leads = leads * 6 // 5
    jsonl = store.with_suffix(".jsonl")
    write_jsonl(jsonl, history[:lines])
    with Engine(Settings(db=str(store), database_url=None), clock=lambda: NOW) as engine:
        report = ingest_jsonl(engine, jsonl, actor="dump")
        assert not report.rejected, report.rejected[:3]


def _json(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def views(engine: Engine, as_of: datetime | None) -> dict[str, Any]:
    out: dict[str, Any] = {"views": _json(engine.views(as_of=as_of))}
    for name, overrides in FUNNELS.items():
        out[f"funnel {name}"] = _json(engine.funnel(as_of=as_of, **overrides))
    for name in engine.pipelines.by_name:
        out[f"pipeline {name}"] = _json(engine.pipeline(as_of=as_of, pipeline_name=name))
        out[f"stays {name}"] = _json(engine.stage_times(as_of=as_of, pipeline_name=name))
    return out


def dump(store: Path, output: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "store.db"
        shutil.copy(store, copy)
        with Engine(Settings(db=str(copy), database_url=None), clock=lambda: NOW) as engine:
            out = {"now": views(engine, None), "as of": views(engine, AS_OF)}
            out["changes"] = _json(
                engine.pipeline_changes(datetime(2025, 10, 1, tzinfo=UTC), AS_OF)
            )
            out["live funnel"] = _json(engine.live_funnel()[0])
            out["live pipeline"] = _json(engine.live_pipeline()[0])
            for scenario in sorted(SCENARIOS.glob("*.toml")):
                for at in (None, AS_OF):
                    result = engine.what_if(scenario, as_of=at)
                    out[f"what-if {scenario.name} {at}"] = _json(result)
    output.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "build":
        lines = int(args[args.index("--lines") + 1]) if "--lines" in args else 100_000
        build(Path(args[0]), lines)
    else:
        dump(Path(args[0]), Path(args[1]))
