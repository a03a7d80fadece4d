"""Run every benchmark case, then write benchmarks/RESULTS.md and print it.

    python benchmarks/run.py                           # 10,000 and 100,000 events
    DEALENGINE_BENCH_LARGE=1 python benchmarks/run.py  # and 1,000,000 (slow)
    python benchmarks/run.py -k rebuild                # extra arguments go to pytest

The raw numbers stay in benchmarks/results.json (pytest-benchmark's format).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RAW = HERE / "results.json"
RESULTS = HERE / "RESULTS.md"

LABELS = {
    ("rebuild", "dealengine"): "engine.views() (split over the cores: the default)",
    ("rebuild", "one-process"): "engine.views() in one process (rebuild_processes=1)",
    ("rebuild", "a"): "(a) plain SQLite table + orjson + minimal fold",
    ("rebuild", "b"): "(b) DuckDB SQL on the JSONL file",
    ("rebuild", "c"): "(c) eventsourcing default read + the engine's folds",
    ("ingest-batched", "dealengine"): "ingest_jsonl (2,000 lines per transaction)",
    ("ingest-batched", "d"): "(d) app.save of pre-built events, 2,000 per save",
    ("ingest-one", "dealengine"): "execute_batch([command]) per line",
    ("whatif", "rebuild"): "engine.views() (one full rebuild)",
    ("whatif", "pipeline-rules"): "what_ifs: baseline + 3 pipeline-rule scenarios",
    ("whatif", "examples"): "what_ifs: baseline + 3 examples (funnel rule, channel, probabilities)",
    ("whatif", "own-streams"): "what_ifs: baseline + 3 scenarios with their own streams",
}
TITLES = {
    "rebuild": "Full rebuild of funnel + pipeline",
    "ingest-batched": "Batched ingest into an empty store",
    "ingest-one": "Ingest, one command per save",
    "load-deal": "Loading one deal (a won deal with the longest history)",
    "view-catch-up": "Materialised views: catching up from position 0 (funnel + pipeline)",
    "first-query": "The first funnel + pipeline query after an ingest (views built from the "
    "stream), vs `--full` in alternating rounds (target: at most 1.2x)",
    "view-query": "Querying the materialised funnel + pipeline (vs DuckDB recomputing them)",
    "whatif": "What-if: the baseline and 3 scenarios in one read (vs one full rebuild)",
    "verify": "Verifying every hash chain (dealengine verify)",
    "startup": "Start-up of `dealengine --help` in a new process (target: at most 0.3 s)",
    "http-record": "HTTP API: single-interaction POSTs to `dealengine serve` vs engine.record",
}


@dataclass(frozen=True, slots=True)
class Row:
    group: str
    case: str
    backend: str
    size: int
    events: int
    median: float
    rounds: int
    extra: dict[str, Any]

    @property
    def per_event(self) -> float:
        return self.median / self.events


Match = Callable[[Row, Row], bool]  # (row, candidate reference)
RATIOS: dict[str, list[tuple[str, Match]]] = {
    "rebuild": [
        ("vs (a)", lambda r, c: c.case == "a"),
        ("vs (b)", lambda r, c: c.case == "b"),
        ("vs (c)", lambda r, c: c.case == "c" and c.backend == r.backend),
    ],
    "ingest-batched": [("vs (d)", lambda r, c: c.case == "d" and c.backend == r.backend)],
    "whatif": [("vs rebuild", lambda r, c: c.case == "rebuild" and c.backend == r.backend)],
    "http-record": [
        ("vs engine.record", lambda r, c: c.case.startswith("engine.") and c.backend == r.backend)
    ],
}


def pg_vs_sqlite(row: Row, candidate: Row) -> bool:
    return row.backend == "pg" and candidate.backend == "sqlite" and candidate.case == row.case


def rows_of(raw: dict[str, Any]) -> list[Row]:
    rows = []
    for b in raw["benchmarks"]:
        x = dict(b["extra_info"])
        group, case, backend, size, events = (
            x.pop(k) for k in ("group", "case", "backend", "size", "events")
        )
        rows.append(
            Row(group, case, backend, size, events, b["stats"]["median"], b["stats"]["rounds"], x)
        )
    return sorted(
        rows,
        key=lambda r: (
            r.size,
            r.case not in ("dealengine", "one-process"),
            r.case,
            r.backend != "sqlite",
        ),
    )


def ratio(row: Row, rows: list[Row], match: Match, same_size: bool = True) -> str:
    """Time per event of `row` over that of its reference: 2.0x = twice as slow."""
    for ref in rows:
        size_ok = ref.size == row.size or not same_size
        if ref is not row and ref.group == row.group and size_ok and match(row, ref):
            return f"{row.per_event / ref.per_event:.2f}x"
    return ""


def seconds(t: float) -> str:
    if t >= 1:
        return f"{t:.2f} s"
    return f"{t * 1e3:.1f} ms" if t >= 1e-3 else f"{t * 1e6:.0f} µs"


def table(headers: list[str], lines: list[list[str]]) -> str:
    aligns = ["---" if h in ("case", "store") else "--:" for h in headers]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(aligns) + "|"]
    return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines])


def group_table(group: str, rows: list[Row]) -> str:
    mine = [r for r in rows if r.group == group]
    ratios = RATIOS.get(group, [])
    headers = ["lines", "case", "store", "median", "rounds", "events", "events/s"]
    headers += [name for name, _ in ratios] + ["PG vs SQLite"]
    latency = any("p50_ms" in r.extra for r in mine)  # per-call latencies, where measured
    if latency:
        headers += ["p50", "p99"]
    alternating = any("vs_full" in r.extra for r in mine)  # measured against --full in turns
    if alternating:
        headers += ["--full (alternating)", "vs --full", "load"]
    lines = [
        [
            f"{r.size:,}",
            LABELS.get((group, r.case), r.case),
            r.backend,
            seconds(r.median),
            str(r.rounds),
            f"{r.events:,}",
            f"{r.events / r.median:,.0f}",
            *(ratio(r, mine, match) for _, match in ratios),
            ratio(r, mine, pg_vs_sqlite, same_size=group != "ingest-one"),
            *(
                [f"{r.extra.get('p50_ms', '')} ms", f"{r.extra.get('p99_ms', '')} ms"]
                if latency
                else []
            ),
            *(
                [
                    seconds(r.extra["full_median_s"]),
                    f"{r.extra['vs_full']:.2f}x",
                    f"{r.extra['load']:.1f}",
                ]
                if alternating
                else []
            ),
        ]
        for r in mine
    ]
    return f"## {TITLES[group]}\n\n" + table(headers, lines)


def rss_table(rows: list[Row]) -> str:
    headers = [
        "lines",
        "events",
        "leads",
        "deals",
        "peak RSS",
        "RSS of an idle engine",
        "wall time",
    ]
    lines = [
        [
            f"{r.size:,}",
            f"{r.events:,}",
            f"{r.extra['leads']:,}",
            f"{r.extra['deals']:,}",
            f"{r.extra['peak_rss_mb']:,} MB",
            f"{r.extra['idle_rss_mb']:,} MB",
            seconds(r.median),
        ]
        for r in rows
        if r.group == "rss"
    ]
    title = "## Peak memory of a full rebuild (SQLite, in a new interpreter)"
    return f"{title}\n\n" + table(headers, lines)


def render(raw: dict[str, Any], command: str) -> str:
    m, commit = raw["machine_info"], raw["commit_info"]
    rows = rows_of(raw)
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    bench = m.get("bench", {})
    dirty = " (with uncommitted changes)" if commit.get("dirty") else ""
    head = [
        "# dealengine benchmarks",
        "",
        f"- date: {raw['datetime'][:19].replace('T', ' ')} UTC; command: `{command}`",
        f"- machine: {m['cpu'].get('brand_raw', m['machine'])}, {m['cpu']['count']} cores, "
        f"{m.get('ram_gb', '?')} GB RAM, {m['system']} {m['release']}",
        f"- python: {m['python_implementation']} {m['python_version']}; {versions}",
        f"- commit: {commit.get('id', '?')[:10]}{dirty}",
        f"- history: `dealengine.demo.generate`, seed {bench.get('seed', '?')}, the first N lines; "
        "'lines' is N, 'events' the events stored (a deal_opened line stores two)",
        "",
        "Times are medians. Ratios compare the time per event with the reference: 2.00x takes "
        "twice as long, 0.50x half as long. SQLite stores are files on local disk, read warm; "
        "PostgreSQL runs on the same machine. Baselines (a), (b) and (c) are checked, outside "
        "the timing, to give the same step counts and stage totals as `engine.views()`. DuckDB "
        "and the engine's default rebuild and what-if (split over the cores from 50,000 events) "
        "use every core, the others one.",
    ]
    body = [group_table(g, rows) for g in TITLES if any(r.group == g for r in rows)]
    if any(r.group == "rss" for r in rows):
        body.append(rss_table(rows))
    return "\n".join(head) + "\n\n" + "\n\n".join(body) + "\n"


KEPT = "<!-- measured by hand: run.py keeps what follows -->"


def kept(results: str) -> str:
    """The sections of RESULTS.md measured by hand (after the KEPT line), which a new run
    keeps at the end of the file it writes."""
    at = results.find(KEPT)
    return "" if at < 0 else "\n" + results[at:]


def main(args: list[str]) -> int:
    pytest = [
        sys.executable,
        "-m",
        "pytest",
        str(HERE),
        "--benchmark-only",
        f"--benchmark-json={RAW}",
    ]
    pytest += ["--benchmark-columns=min,median,max,rounds", "-p", "no:cacheprovider", *args]
    code = subprocess.call(pytest, cwd=HERE.parent)
    if code != 0:
        print(f"pytest exited with {code}: {RESULTS.name} not written", file=sys.stderr)
        return code
    large = "DEALENGINE_BENCH_LARGE=1 " if os.environ.get("DEALENGINE_BENCH_LARGE") == "1" else ""
    command = large + " ".join(["python benchmarks/run.py", *args])
    text = render(json.loads(RAW.read_text()), command)
    if RESULTS.exists():
        text += kept(RESULTS.read_text(encoding="utf-8"))
    RESULTS.write_text(text, encoding="utf-8")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
