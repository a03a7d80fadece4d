"""The per-event cost of ingest and rebuild with currency conversions, against another tree's
code (issue 17: within 10 % of the code before it), in alternating rounds so that the load of a
shared machine weighs on both alike.

    python benchmarks/currency_cost.py --base /work/main/src [--lines 50000] [--rounds 5]

Each round runs, each in a fresh process on a fresh SQLite store: the base tree on the seeded
history (every deal in USD: it refuses others), this tree on the same history, and this tree
on the history with every third deal in EUR and a rate EUR USD 1.25 recorded before it (every
one of those deals converted by the reports). It times the ingest of the JSONL file, the
rebuild of both materialised views, and one full pass (`engine.views()`: funnel and pipeline
folded from the stream, the pipeline's report with its conversions). Prints the median CPU
microseconds per event of each (the process's own time: on a loaded machine, wall time is
mostly waiting for a core) and their ratios to the base, then the same in wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"

ROUND = r"""
import json, sys, time
from pathlib import Path
from dealengine import Engine, Settings
from dealengine.demo import NOW, generate, write_jsonl
from dealengine.ingest.jsonl import ingest_jsonl

lines_wanted, eur, folder = int(sys.argv[1]), sys.argv[2] == "eur", Path(sys.argv[3])
leads = lines_wanted * 2 // 5 + 10
while len(history := generate(leads, 7)) < lines_wanted:
    leads = leads * 6 // 5
history = history[:lines_wanted]
if eur:
    for line in history:
        if line["type"] == "deal_opened" and int(line["deal_id"][2:]) % 3 == 0:
            line["currency"] = "EUR"
jsonl = folder / "h.jsonl"
write_jsonl(jsonl, history)
settings = Settings(db=str(folder / "s.db"), database_url=None, rebuild_processes=1)
with Engine(settings, clock=lambda: NOW) as e:  # one process: its CPU time is the cost
    if eur:
        e.set_rate("EUR", "USD", "1.25", "2000-01-01")
    out = {"events": len(history)}
    def timed(name, work):
        cpu, wall = time.process_time(), time.perf_counter()
        result = work()
        out[name], out[name + " wall"] = time.process_time() - cpu, time.perf_counter() - wall
        return result
    report = timed("ingest", lambda: ingest_jsonl(e, jsonl, actor="bench"))
    assert not report.rejected, report.rejected[:3]
    timed("rebuild", lambda: (e.view("funnel").rebuild(), e.view("pipeline").rebuild()))
    _, pipeline = timed("views", e.views)
    if eur:
        assert not getattr(pipeline, "missing_rates", None)
print(json.dumps(out))
"""


def one_round(src: Path, lines: int, eur: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="currency-bench-") as folder:
        done = subprocess.run(
            [sys.executable, "-c", ROUND, str(lines), "eur" if eur else "usd", folder],
            env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the other tree's src folder")
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    runs = {"base": (args.base, False), "here": (HERE, False), "here, a third EUR": (HERE, True)}
    got: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    for n in range(args.rounds):
        for name, (src, eur) in runs.items():  # alternating: base, here, here EUR, base, ...
            got[name].append(one_round(src, args.lines, eur))
            print(f"round {n + 1} {name}: {got[name][-1]}", file=sys.stderr)
    base = {k: statistics.median(r[k] / r["events"] for r in got["base"]) for k in got["base"][0]}
    for clock in ("", " wall"):
        print(f"{'µs/event' + (clock or ' (CPU)'):20} {'ingest':>16} {'rebuild':>16} {'views':>16}")
        for name, rounds in got.items():
            cost = {k: statistics.median(r[k] / r["events"] for r in rounds) for k in rounds[0]}
            cells = [f"{cost[k + clock] * 1e6:7.2f} ({cost[k + clock] / base[k + clock]:.2f}x)"
                     for k in ("ingest", "rebuild", "views")]  # fmt: skip
            print(f"{name:20} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16}")


if __name__ == "__main__":
    main()
