"""The first query after an ingest against `--full` (issue 21): CPU time, alternating rounds.

    python benchmarks/first_query.py STORE.db [--rounds 7] [--view funnel|pipeline|both]
    python benchmarks/first_query.py --pg 'postgresql://...?schema=S' [--rounds 7] [...]

Each round times `funnel --full` (engine.funnel()), `pipeline --full` or both on the store,
then the first `live_funnel()`, `live_pipeline()` or both on the same events with no view yet
(SQLite: a hard link to STORE.db, the views beside it; PostgreSQL: the schema's view tables
dropped first). It prints the medians of the process CPU time and their ratio, the same of
the wall time (on PostgreSQL the server's work shows there only), and the load.
Build a store with `python benchmarks/dump.py build STORE.db --lines N`; for PostgreSQL,
ingest its JSONL into an empty schema (`--ingest FILE.jsonl` does it once).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dealengine import Engine, Settings
from harness import drop_views

VIEWS: dict[str, tuple[Callable[[Engine], object], Callable[[Engine], object]]] = {
    "funnel": (lambda e: e.funnel(), lambda e: e.live_funnel()),
    "pipeline": (lambda e: e.pipeline(), lambda e: e.live_pipeline()),
    "both": (
        lambda e: (e.funnel(), e.pipeline()),
        lambda e: (e.live_funnel(), e.live_pipeline()),
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store", nargs="?", type=Path)
    parser.add_argument("--pg", help="a PostgreSQL URL with ?schema=")
    parser.add_argument("--ingest", type=Path, help="ingest this JSONL into --pg's schema first")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--view", choices=sorted(VIEWS), default="both")
    args = parser.parse_args()
    full, first = VIEWS[args.view]
    if args.pg and args.ingest:
        from dealengine.ingest.jsonl import ingest_jsonl

        with Engine(Settings(database_url=args.pg)) as engine:
            ingest_jsonl(engine, args.ingest, actor="bench")
    fulls, firsts = [], []
    for _ in range(args.rounds):
        with opened(args) as engine:
            fulls.append(timed(lambda: full(engine)))
        with opened(args, without_views=True) as engine:
            firsts.append(timed(lambda: first(engine)))
    for i, what in enumerate(("CPU", "wall")):
        a = statistics.median(t[i] for t in fulls)
        b = statistics.median(t[i] for t in firsts)
        print(
            f"{args.view}: --full {a:.3f} s, first query {b:.3f} s {what} (medians of "
            f"{args.rounds}); ratio {b / a:.2f}; load {os.getloadavg()[0]:.1f}"
        )


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """The process CPU time and the wall time `fn()` takes."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


class opened:
    """An Engine on the store; `without_views`: on the same events with no view yet."""

    def __init__(self, args: argparse.Namespace, *, without_views: bool = False) -> None:
        self.folder: Path | None = None
        if args.pg:
            if without_views:
                drop_views(args.pg)
            self.engine = Engine(Settings(database_url=args.pg, rebuild_processes=1))
            return
        db = args.store
        if without_views:
            self.folder = Path(tempfile.mkdtemp(dir=db.parent))
            os.link(db, self.folder / db.name)
            db = self.folder / db.name
        self.engine = Engine(Settings(db=str(db), database_url=None, rebuild_processes=1))

    def __enter__(self) -> Engine:
        return self.engine

    def __exit__(self, *_: object) -> None:
        self.engine.close()
        if self.folder is not None:
            shutil.rmtree(self.folder)


if __name__ == "__main__":
    main()
