"""What every benchmark case shares: sizes, the seeded histories (built once, cached on disk),
and `measure`, which times a case and records its events/s for RESULTS.md.

Environment: DEALENGINE_BENCH_LARGE=1 adds the 1,000,000-event cases; DEALENGINE_BENCH_SMOKE=1
shrinks every case to a tiny history (used by tests/test_benchmarks_smoke.py);
DEALENGINE_BENCH_CACHE names the cache directory (default: <tmp>/dealengine-bench).

A new case is a test function in a test_*.py file here, e.g.

    @pytest.mark.parametrize("backend", BACKENDS)
    @pytest.mark.parametrize("size", SIZES)
    def test_funnel(benchmark: BenchmarkFixture, store: Engine, size: int, backend: str) -> None:
        measure(benchmark, store.funnel, group="funnel", case="dealengine", backend=backend,
                size=size, events=history(size).events)

(`store` is the prepared store; `fresh()` gives an empty one, for cases that write), and, for
its own table in RESULTS.md, a title in run.py's TITLES.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, cast

import orjson
from pytest_benchmark.fixture import BenchmarkFixture

import dealengine
from dealengine import Engine, Settings
from dealengine.demo import generate, write_jsonl
from dealengine.domain.catalogue import BUILT_IN
from dealengine.domain.definitions import PipelineDefinition
from dealengine.ingest.jsonl import ingest_jsonl
from dealengine.projections.funnel import FunnelView
from dealengine.projections.pipeline import PipelineView

T = TypeVar("T")

SEED = 7
SMOKE = os.environ.get("DEALENGINE_BENCH_SMOKE") == "1"
LARGE = os.environ.get("DEALENGINE_BENCH_LARGE") == "1"
SMALL = 300 if SMOKE else 10_000
SIZES = [SMALL] if SMOKE else [10_000, 100_000, *([1_000_000] if LARGE else [])]
RSS_SIZES = [SMALL] if SMOKE else [100_000, *([1_000_000] if LARGE else [])]
ONE_BY_ONE = {"sqlite": SMALL, "pg": 100 if SMOKE else 2_000}  # lines, one save each
BACKENDS = ["sqlite", "pg"]
ROUNDS = 3  # for the slow cases (pedantic mode, one iteration per round)
PG_URL = os.environ.get("DEALENGINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
CACHE = Path(
    os.environ.get("DEALENGINE_BENCH_CACHE") or Path(tempfile.gettempdir(), "dealengine-bench")
)
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class History:
    """A seeded history of `size` JSONL lines, and a SQLite store it was ingested into."""

    size: int
    jsonl: Path
    store: Path  # the dealengine SQLite store (read only: cases that write use a fresh store)
    plain: Path  # the same stored events in a plain table, for baseline (a)
    events: int  # events stored (a deal_opened line stores two: DealOpened + LeadConverted)
    deal_id: str  # a won deal with the longest history

    def lines(self, n: int | None = None) -> list[dict[str, Any]]:
        with self.jsonl.open("rb") as f:
            return [orjson.loads(line) for _, line in zip(range(n or self.size), f, strict=False)]


def source_key() -> str:
    """A digest of the engine's code and definitions: a cached store is rebuilt when they change."""
    files = sorted(Path(dealengine.__file__).parent.rglob("*.py"))
    files += sorted((ROOT / "projections").glob("*.toml"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@cache
def history(size: int) -> History:
    """The history of `size` lines, built on first use and cached in CACHE by size+seed+code."""
    folder = CACHE / f"history-{size}-seed{SEED}-{source_key()}"
    if not (folder / "meta.json").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f"building-{size}-", dir=CACHE))
        _build(building, size)
        try:
            building.rename(folder)
        except OSError:  # another run built it first
            shutil.rmtree(building)
        for stale in CACHE.glob(f"history-{size}-seed{SEED}-*"):  # built by older code
            if stale != folder:
                shutil.rmtree(stale, ignore_errors=True)
    meta = orjson.loads((folder / "meta.json").read_bytes())
    return History(size, folder / "history.jsonl", folder / "store.db", folder / "plain.db", **meta)


def _build(folder: Path, size: int) -> None:
    leads = size * 2 // 5 + 10  # about 2.7 lines per lead
    while len(lines := generate(leads, SEED)) < size:
        leads = leads * 6 // 5
    lines = lines[:size]  # a prefix in time order is a valid history
    write_jsonl(folder / "history.jsonl", lines)
    with Engine(Settings(db=str(folder / "store.db"), database_url=None)) as engine:
        report = ingest_jsonl(engine, folder / "history.jsonl", actor="bench")
        assert not report.rejected, report.rejected[:5]
        plain = sqlite3.connect(folder / "plain.db")
        plain.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, stream TEXT, type TEXT, data BLOB)"
        )
        plain.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?)",
            (
                (n, stream, BUILT_IN.reading[topic][0], data)
                for n, stream, topic, data in engine.store.stream()
            ),
        )
        plain.commit()
        plain.close()
    won = {line["deal_id"] for line in lines if line["type"] == "deal_won"}
    length = Counter(line.get("deal_id") for line in lines if line.get("deal_id") in won)
    meta = {"events": report.events, "deal_id": max(sorted(won), key=length.__getitem__)}
    (folder / "meta.json").write_bytes(orjson.dumps(meta))


def events_in(lines: list[dict[str, Any]]) -> int:
    """Events that ingesting `lines` stores: deal_opened also converts its lead."""
    return len(lines) + sum(
        1 for line in lines if line["type"] == "deal_opened" and "lead_id" in line
    )


def measure(
    benchmark: BenchmarkFixture,
    fn: Callable[..., T],
    *,
    group: str,
    case: str,
    size: int,
    events: int,
    backend: str | None = None,
    rounds: int | None = ROUNDS,
    setup: Callable[[], Any] | None = None,
    **extra: Any,
) -> T:
    """Time `fn` (pedantic `rounds`, or pytest-benchmark's own calibration when None); record
    what RESULTS.md needs in extra_info. `setup` (untimed) runs before each round."""
    benchmark.group = f"{group} {size}"
    benchmark.extra_info.update(group=group, case=case, backend=backend, size=size, events=events)
    benchmark.extra_info.update(extra)
    if rounds is None and setup is None:
        result = benchmark(fn)
    else:
        pedantic: Callable[..., T] = benchmark.pedantic
        result = pedantic(fn, setup=setup, rounds=rounds or ROUNDS, iterations=1)
    if benchmark.stats:
        benchmark.extra_info["events_per_s"] = events / benchmark.stats.stats.median
    return cast(T, result)


# --- what the funnel and pipeline say, in one comparable shape --------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    steps: dict[str, list[int]]  # "*" (all leads) and each first-touch channel: leads per step
    stages: dict[str, tuple[int, Decimal]]  # stage (open, won or lost): deals, amount
    win_rate: float | None


def summary(views: tuple[FunnelView, PipelineView], defn: PipelineDefinition) -> Summary:
    """The numbers of `engine.views()` that the baselines compute too."""
    funnel, pipeline = views
    steps = {"*": [s.leads for s in funnel.steps]}
    steps |= {c: [s.leads for s in b.steps] for c, b in funnel.by_channel.items()}
    stages = {s.name: (s.open_deals, s.amount) for s in pipeline.stages}
    stages[defn.won_stage] = (pipeline.won.deals, pipeline.won.amount)
    stages[defn.lost_stage] = (pipeline.lost.deals, pipeline.lost.amount)
    return Summary(steps, {s: v for s, v in stages.items() if v[0]}, pipeline.win_rate)


def drop_views(url: str) -> None:
    """Drop the materialised views' tables (and their tracking) of the schema in `url`."""
    import psycopg
    from psycopg.sql import SQL, Identifier

    schema = url.rpartition("schema=")[2]
    with psycopg.connect(url.partition("?")[0], autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND "
            "(table_name LIKE 'dealengine_view%%' OR table_name LIKE '%%tracking%%')",
            (schema,),
        ).fetchall()
        for (table,) in tables:
            conn.execute(SQL("DROP TABLE {}.{}").format(Identifier(schema), Identifier(table)))
