"""The cost of personal data: ingest and rebuild with and without sealed fields (issue 20).

    python benchmarks/personal.py [--leads 10000] [--rounds 5] [--postgres URL]

Two histories of the same shape, N leads of three events each: `site_visited`, then
`lead_identified` with four personal values (email, name, phone, company: each sealed with the
lead's key, one key made per lead) in the personal one, or `content_downloaded` with one plain
value in the plain one, then `demo_requested`. Each round ingests both into fresh stores (plain
first, then personal: alternating, so the machine's load weighs on both alike), then rebuilds
the funnel and pipeline of each in one process (`engine.views()`). Prints the medians and the
ratios (personal over plain) as a Markdown table for RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import psycopg

from dealengine import Engine, Settings
from dealengine.ingest.jsonl import ingest_jsonl


def history(leads: int, personal: bool) -> bytes:
    lines = []
    for n in range(leads):
        lead, day = f"L-{n}", 1 + n % 28
        at = f"2026-03-{day:02d}T10:{n % 60:02d}:00Z"
        lines.append({"type": "site_visited", "lead_id": lead, "occurred_at": at,
                      "channel": ("web", "ads", "referral")[n % 3], "id": f"v-{n}"})  # fmt: skip
        second = f"2026-03-{day:02d}T11:{n % 60:02d}:00Z"
        if personal:
            lines.append({"type": "lead_identified", "lead_id": lead, "occurred_at": second,
                          "email": f"person.{n}@example.com", "name": f"Person Number {n}",
                          "phone": f"+1 555 01{n:06d}", "company": f"Company {n % 997}",
                          "id": f"i-{n}"})  # fmt: skip
        else:
            lines.append({"type": "content_downloaded", "lead_id": lead, "occurred_at": second,
                          "asset": f"whitepaper-{n % 7}", "id": f"i-{n}"})  # fmt: skip
        third = f"2026-03-{day:02d}T12:{n % 60:02d}:00Z"
        lines.append({"type": "demo_requested", "lead_id": lead, "occurred_at": third,
                      "id": f"d-{n}"})  # fmt: skip
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def fresh_settings(folder: Path, postgres: str | None) -> Settings:
    if postgres is None:
        return Settings(db=str(folder / f"{uuid.uuid4().hex}.db"), database_url=None,
                        rebuild_processes=1)  # fmt: skip
    schema = f"erasure_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return Settings(database_url=f"{postgres}?schema={schema}", rebuild_processes=1)


def drop(settings: Settings, postgres: str | None) -> None:
    if postgres is not None and settings.database_url:
        schema = settings.database_url.rsplit("schema=", 1)[1]
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


Times = tuple[float, float, float, float]  # ingest wall, CPU; rebuild wall, CPU


def one_round(folder: Path, jsonl: Path, events: int, postgres: str | None) -> Times:
    """Wall and CPU seconds (this process's: on a loaded machine its CPU time is the steadier
    measure of a cost; PostgreSQL's own work is in the wall time only)."""
    settings = fresh_settings(folder, postgres)
    try:
        with Engine(settings) as engine:
            wall, cpu = time.perf_counter(), time.process_time()
            report = ingest_jsonl(engine, jsonl, actor="bench")
            ingest = (time.perf_counter() - wall, time.process_time() - cpu)
            assert engine.store.position() == events, report
            wall, cpu = time.perf_counter(), time.process_time()
            funnel, _ = engine.views()
            rebuild = (time.perf_counter() - wall, time.process_time() - cpu)
            assert funnel.steps[0].leads == events // 3
        return (*ingest, *rebuild)
    finally:
        drop(settings, postgres)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", default=None)
    args = parser.parse_args()
    events = 3 * args.leads
    with tempfile.TemporaryDirectory(prefix="dealengine-personal-") as tmp:
        folder = Path(tmp)
        files = {}
        for name, personal in (("plain", False), ("personal", True)):
            files[name] = folder / f"{name}.jsonl"
            files[name].write_bytes(history(args.leads, personal))
        times: dict[str, list[Times]] = {"plain": [], "personal": []}
        for _ in range(args.rounds):
            for name in ("plain", "personal"):  # A, B, A, B...: the same load on both
                times[name].append(one_round(folder, files[name], events, args.postgres))
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"leads {args.leads:,}, events {events:,}, rounds {args.rounds} (alternating), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("| store | phase | measure | plain | personal | personal / plain |")
    print("| --- | --- | --- | --: | --: | --: |")
    phases = ("ingest (JSONL, batched)", "rebuild (engine.views(), 1 process)")
    for n, (phase, measure) in enumerate((p, m) for p in phases for m in ("wall", "CPU")):
        plain = statistics.median(t[n] for t in times["plain"])
        personal = statistics.median(t[n] for t in times["personal"])
        print(
            f"| {store} | {phase} | {measure} | {plain * 1000:,.0f} ms "
            f"({events / plain:,.0f} ev/s) | {personal * 1000:,.0f} ms "
            f"({events / personal:,.0f} ev/s) | {personal / plain:.2f}x |"
        )


if __name__ == "__main__":
    main()
