"""Time one case in this checkout by wall and process CPU time, one JSON line per round: for
comparing two checkouts in alternating runs on a shared machine, where CPU time holds better.

    cd CHECKOUT && DEALENGINE_BENCH_CACHE=/tmp/bench-TAG PYTHONPATH=$PWD/src \\
        python /path/to/rounds.py TAG verify|ingest|es_save sqlite|pg ROUNDS [LINES]

`verify`: `engine.verify()` of the prepared store (one call to warm up, then ROUNDS);
`ingest`: `ingest_jsonl` of the history into a fresh store per round; `es_save`: baseline (d).
It reads the checkout's own benchmarks/ (harness.py, baselines.py), so it runs unchanged
against an older commit. A PostgreSQL store is copied into a schema named after TAG and
the cached history (kept for the next run; drop `rounds_*` schemas when done).
"""

from __future__ import annotations

import gc
import json
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path.cwd() / "benchmarks"))  # the checkout's harness, not this file's

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

from dealengine import Engine, Settings
from harness import PG_URL, history


def on_pg(schema: str) -> Settings:
    return Settings(database_url=f"{PG_URL}?schema={schema}")


def run_sql(statement: str, schema: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(SQL(statement).format(Identifier(schema)))  # type: ignore[arg-type]


def prepared(tag: str, backend: str, store: Path) -> Engine:
    if backend == "sqlite":
        return Engine(Settings(db=str(store), database_url=None))
    schema = f"rounds_{tag}_{store.parent.name[-12:]}"
    with psycopg.connect(PG_URL) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        exists = found.fetchone() is not None
    if exists:
        return Engine(on_pg(schema))
    run_sql("CREATE SCHEMA {}", schema)
    engine = Engine(on_pg(schema))
    rows = sqlite3.connect(store).execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
    )
    while batch := rows.fetchmany(5000):
        engine.store.app.recorder.insert_events([StoredEvent(*row) for row in batch])
    return engine


def fresh(backend: str) -> tuple[Engine, Callable[[], None]]:
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="rounds-")
        engine = Engine(Settings(db=str(Path(folder, "store.db")), database_url=None))
        return engine, lambda: shutil.rmtree(folder)
    schema = f"rounds_fresh_{uuid.uuid4().hex[:8]}"
    run_sql("CREATE SCHEMA {}", schema)
    return Engine(on_pg(schema)), lambda: run_sql("DROP SCHEMA {} CASCADE", schema)


def timed(tag: str, case: str, backend: str, fn: Callable[[], object]) -> object:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    line = {"tag": tag, "case": case, "backend": backend, "wall": wall, "cpu": cpu}
    print(json.dumps(line), flush=True)
    return result


def main(tag: str, case: str, backend: str, rounds: int, lines: int) -> None:
    source = history(lines)
    if case == "verify":
        engine = prepared(tag, backend, source.store)
        engine.verify()
        for _ in range(rounds):
            report = timed(tag, case, backend, engine.verify)
            assert report.ok and report.events == source.events  # type: ignore[attr-defined]
        engine.close()
        return
    from baselines import es_save, notifications
    from dealengine.ingest.jsonl import ingest_jsonl

    with Engine(Settings(db=str(source.store), database_url=None)) as cached:
        events = [event for _, event in notifications(cached)] if case == "es_save" else []
    for _ in range(rounds):
        engine, drop = fresh(backend)
        if case == "ingest":
            timed(tag, case, backend, lambda e=engine: ingest_jsonl(e, source.jsonl, actor="bench"))
        else:
            timed(tag, case, backend, lambda e=engine: es_save(e, events))
        assert engine.store.position() >= source.events
        engine.close()
        drop()


if __name__ == "__main__":
    tag, case, backend, rounds, *size = sys.argv[1:]
    main(tag, case, backend, int(rounds), int(size[0]) if size else 100_000)
