"""The 10M-event run (issue 21): a LARGE mode that CI does not run, one step at a time.

    DEALENGINE_BENCH_LARGE=1 python benchmarks/large.py DIR [--lines 10000000] [--steps a,b]

Each step runs in a new interpreter (its wall time and peak RSS from wait4) and appends one
JSON line to DIR/results.jsonl as it ends, so a run stopped half-way keeps what it measured;
a step already in the file is not run again. DIR holds the JSONL history, the stores and
the plain table of baseline (a): several GB (delete it after). Steps, in order:

  history      the seeded history: chunks of `dealengine.demo.generate` (seed 7 + chunk),
               the ids of chunk k prefixed `k-` (each chunk in time order)
  ingest       ingest_jsonl into an empty SQLite store; store size
  es-save      (d): eventsourcing's batched save of the same events, pre-built in chunks
               outside the timing, into another empty SQLite store
  full         engine.views() (--full: funnel and pipeline, one pass)
  funnel-full, pipeline-full: engine.funnel(), engine.pipeline() (`funnel --full`, `pipeline
               --full`), the first query's per-view baselines
  first-query  live_funnel() + live_pipeline() on the store without views (the first query)
  as-of        engine.views(as_of=the middle of the history)
  what-if      what_ifs: the baseline and three example scenarios, one read
  plain        (a): the same events in a plain table, folded by the minimal fold
  duckdb       (b): DuckDB SQL on the JSONL file
  pg-ingest, pg-full, pg-first-query: the same on PostgreSQL (a schema of its own,
               DEALENGINE_TEST_DATABASE_URL); the schema's size
  pg-es-save   (d) on PostgreSQL

`python benchmarks/large.py DIR --report` prints the table (RESULTS.md's 10M section).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STEPS = [
    "history", "ingest", "full", "funnel-full", "pipeline-full", "first-query", "as-of", "what-if", "plain", "duckdb",
    "es-save", "pg-ingest", "pg-full", "pg-first-query", "pg-es-save",
]  # fmt: skip
CHUNK = 1_000_000  # lines generated at a time (a chunk's history is built in memory)
PG_URL = os.environ.get("DEALENGINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = "dealengine_large"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=Path)
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--step", help=argparse.SUPPRESS)  # in the child
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.step:
        print(json.dumps(run_step(args.step, args.dir, args.lines)))
        return 0
    if args.report:
        print(report(args.dir))
        return 0
    if os.environ.get("DEALENGINE_BENCH_LARGE") != "1":
        print("set DEALENGINE_BENCH_LARGE=1: this run takes hours and several GB", file=sys.stderr)
        return 2
    done = {r["step"] for r in results(args.dir)}
    for step in args.steps.split(","):
        if step in done:
            continue
        began = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, __file__, str(args.dir), "--lines", str(args.lines), "--step", step],
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        if status != 0:
            print(f"step {step} failed (status {status})", file=sys.stderr)
            return 1
        row = {"step": step, **json.loads(out), "peak_rss_mb": round(usage.ru_maxrss / 1024)}
        row["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)  # its own: load aside
        row["wall_s"] = round(time.perf_counter() - began, 1)
        row["load"] = os.getloadavg()
        row["at"] = datetime.now(UTC).isoformat(timespec="seconds")
        with (args.dir / "results.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    return 0


def results(folder: Path) -> list[dict[str, Any]]:
    path = folder / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def timed(fn: Any) -> tuple[Any, float]:
    began = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - began


def run_step(step: str, folder: Path, lines: int) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from dealengine import Engine, Settings

    jsonl, db = folder / "history.jsonl", folder / "store.db"
    meta = folder / "history.json"

    def sqlite(path: Path = db, **kw: Any) -> Engine:
        return Engine(Settings(db=str(path), database_url=None, **kw))

    def pg() -> Engine:
        return Engine(Settings(database_url=f"{PG_URL}?schema={SCHEMA}"))

    if step == "history":
        (n, span), seconds = timed(lambda: write_history(jsonl, lines))
        meta.write_text(json.dumps({"lines": n, "span": span}))
        return {"seconds": seconds, "lines": n, "bytes": jsonl.stat().st_size}
    if step in ("ingest", "pg-ingest"):
        from dealengine.ingest.jsonl import ingest_jsonl

        if step == "pg-ingest":
            reset_schema()
        engine = sqlite() if step == "ingest" else pg()
        with engine:
            report, seconds = timed(lambda: ingest_jsonl(engine, jsonl, actor="bench"))
            assert not report.rejected, report.rejected[:3]
        size = store_bytes(db) if step == "ingest" else schema_bytes()
        return {"seconds": seconds, "events": report.events, "store_bytes": size}
    if step in ("full", "pg-full", "as-of"):
        with sqlite() if step != "pg-full" else pg() as engine:
            as_of = middle(meta) if step == "as-of" else None
            (funnel, _), seconds = timed(lambda: engine.views(as_of=as_of))
            return {"seconds": seconds, "events": engine.store.position(), "leads": funnel.leads}
    if step in ("funnel-full", "pipeline-full"):
        with sqlite() as engine:
            fold = engine.funnel if step == "funnel-full" else engine.pipeline
            _, seconds = timed(fold)
            return {"seconds": seconds, "events": engine.store.position()}
    if step in ("first-query", "pg-first-query"):
        if step == "first-query":
            link = folder / "first-query" / "store.db"
            shutil.rmtree(link.parent, ignore_errors=True)
            link.parent.mkdir()
            os.link(db, link)  # the same events, no views yet
            engine = sqlite(link)
        else:
            engine = pg()
        with engine:
            (funnel, _), f_seconds = timed(engine.live_funnel)
            _, p_seconds = timed(engine.live_pipeline)
            views = store_bytes(link, ".views") if step == "first-query" else schema_bytes(True)
            return {"seconds": f_seconds + p_seconds, "funnel_s": f_seconds,
                    "pipeline_s": p_seconds, "events": engine.store.position(),
                    "leads": funnel.leads, "views_bytes": views}  # fmt: skip
    if step == "what-if":
        scenarios = HERE.parent / "projections" / "scenarios"
        names = ["thirty-day-window", "without-paid-social", "conservative-forecast"]
        with sqlite() as engine:
            _, seconds = timed(lambda: engine.what_ifs([scenarios / f"{n}.toml" for n in names]))
            return {"seconds": seconds, "events": engine.store.position()}
    if step == "plain":
        from baselines import plain_views
        from dealengine.domain.definitions import load_funnel, load_pipeline

        plain = folder / "plain.db"
        if not plain.exists():
            write_plain(db, plain)
        summary, seconds = timed(lambda: plain_views(plain, load_funnel(), load_pipeline()))
        return {"seconds": seconds, "leads": sum(summary.steps["*"][:1])}
    if step == "duckdb":
        from baselines import duckdb_views
        from dealengine.domain.definitions import load_funnel, load_pipeline

        summary, seconds = timed(lambda: duckdb_views(jsonl, load_funnel(), load_pipeline()))
        return {"seconds": seconds, "leads": sum(summary.steps["*"][:1])}
    if step in ("es-save", "pg-es-save"):
        return es_save_in_chunks(db, folder, postgres=step == "pg-es-save")
    raise SystemExit(f"unknown step {step!r}")


def write_history(path: Path, lines: int) -> tuple[int, list[str]]:
    from dealengine.demo import generate

    keys = ("lead_id", "deal_id", "id")
    written, times = 0, []
    with path.open("wb") as f:
        for k in range((lines + CHUNK - 1) // CHUNK):
            want = min(CHUNK, lines - written)
            leads = want * 2 // 5 + 10
            while len(chunk := generate(leads, 7 + k)) < want:
                leads = leads * 6 // 5
            prefix = f"{k}-"
            for line in chunk[:want]:
                line = {key: prefix + v if key in keys else v for key, v in line.items()}
                f.write(json.dumps(line).encode() + b"\n")
            written += want
            times += [chunk[0]["occurred_at"], chunk[want - 1]["occurred_at"]]
            del chunk
    return written, [min(times), max(times)]


def middle(meta: Path) -> datetime:
    """The middle of the history's span."""
    first, last = json.loads(meta.read_text())["span"]
    a, b = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (first, last))
    return a + (b - a) / 2


def store_bytes(db: Path, suffix: str = "") -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + suffix + "*"))


def reset_schema() -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")


def schema_bytes(views: bool = False) -> int:
    """The size of the schema's tables (`views`: of the views' tables only)."""
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "AND c.relkind = 'r' AND (NOT %s OR c.relname LIKE 'dealengine_view%%' "
            "OR c.relname LIKE '%%tracking%%')",
            (SCHEMA, views),
        ).fetchone()
    return int(row[0]) if row else 0


def write_plain(db: Path, plain: Path) -> None:
    """Baseline (a)'s table: the stored events, their type names, in order."""
    from dealengine.domain.catalogue import BUILT_IN

    type_of = {topic: event_type for topic, (event_type, _) in BUILT_IN.reading.items()}
    out = sqlite3.connect(plain)
    out.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, stream TEXT, type TEXT, data BLOB)")
    source = sqlite3.connect(db)
    rows = source.execute("SELECT rowid, originator_id, topic, state FROM stored_events")
    while batch := rows.fetchmany(100_000):
        out.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?)",
            [(n, s, type_of[t], d) for n, s, t, d in batch],
        )
    out.commit()
    out.close()


def es_save_in_chunks(db: Path, folder: Path, *, postgres: bool) -> dict[str, Any]:
    """(d): the stored events rebuilt as domain events 100,000 at a time (not timed), each
    chunk saved by eventsourcing's own `app.save`, 2,000 per save (timed)."""
    from eventsourcing.persistence import StoredEvent

    from baselines import es_save
    from dealengine import Engine, Settings

    target = folder / "es-save.db"
    for stale in folder.glob("es-save.db*"):
        stale.unlink()
    if postgres:
        reset_schema()
        settings = Settings(database_url=f"{PG_URL}?schema={SCHEMA}")
    else:
        settings = Settings(db=str(target), database_url=None)
    source = sqlite3.connect(db)
    rows = source.execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
    )
    seconds, saved = 0.0, 0
    with Engine(settings) as engine:
        mapper = engine.store.app.mapper
        while batch := rows.fetchmany(100_000):
            events = [mapper.to_domain_event(StoredEvent(*row)) for row in batch]
            began = time.perf_counter()
            es_save(engine, events)
            seconds += time.perf_counter() - began
            saved += len(events)
    size = schema_bytes() if postgres else store_bytes(target)
    if not postgres:
        for stale in folder.glob("es-save.db*"):
            stale.unlink()
    return {"seconds": seconds, "events": saved, "store_bytes": size}


REFERENCES = {  # step: the baselines its time is compared with, at the same size
    "ingest": ["es-save"], "pg-ingest": ["pg-es-save", "ingest"], "full": ["plain", "duckdb"],
    "pg-full": ["full"], "first-query": ["full"], "pg-first-query": ["pg-full"],
    "as-of": ["full"], "what-if": ["full"],
}  # fmt: skip


def report(folder: Path) -> str:
    """The table of RESULTS.md's 10M section: each step's wall and CPU time, events/s, peak
    RSS, store size, and its time over each baseline's (same size, same run)."""
    rows = {r["step"]: r for r in results(folder)}
    events_stored = max((r.get("events", 0) for r in rows.values()), default=0)
    lines = [
        "| step | events | wall | CPU | µs/event (CPU) | peak RSS | size | vs | load |",
        "|---|--:|--:|--:|--:|--:|--:|---|--:|",
    ]
    for step in STEPS:
        r = rows.get(step)
        if r is None:
            continue
        events = r.get("events") or events_stored
        cpu = r.get("cpu_s")
        ratios = ", ".join(
            f"{r['seconds'] / rows[ref]['seconds']:.2f}x {ref}"
            for ref in REFERENCES.get(step, [])
            if ref in rows
        )
        size = r.get("store_bytes") or r.get("views_bytes") or r.get("bytes")
        lines.append(
            f"| {step} | {events:,} | {r['seconds']:,.0f} s | "
            f"{f'{cpu:,.0f} s' if cpu else ''} | "
            f"{f'{cpu / events * 1e6:.1f}' if cpu and events else ''} | "
            f"{r['peak_rss_mb']:,} MB | {f'{size / 1e9:.2f} GB' if size else ''} | "
            f"{ratios} | {r['load'][0]:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
