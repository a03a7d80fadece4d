"""The rebuild and the what-if mixes under another version of the code and this one, in turn.

    python benchmarks/versus.py BASE_SRC STORE.db [--rounds 3] [--cases rebuild,examples] [--warm-up]

Each round runs every case once per version (BASE_SRC's `dealengine`, then this tree's), each
in a new process that opens STORE.db and times one call (`engine.views()`, or `what_ifs` of a
mix of `test_whatif.py`): the CPU time of the process and its children (the partitions), which
spreads far less than wall time on a shared machine, and the wall time. It prints the medians
per case, this tree's over BASE_SRC's, and the 1-minute load averages seen.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES = ["rebuild", "pipeline-rules", "examples", "own-streams"]


def one(store: str, case: str, scenarios: list[Any], warm_up: bool) -> dict[str, float]:
    """One call of `case` on `store` (after an untimed one if `warm_up`), by the `dealengine`
    on sys.path."""
    from dealengine import Engine, Settings

    with Engine(Settings(db=store, database_url=None)) as engine:

        def call() -> object:
            return engine.views() if case == "rebuild" else engine.what_ifs(scenarios)

        if warm_up:
            call()
        before, start = _cpu(), time.perf_counter()
        call()
        return {"cpu": _cpu() - before, "wall": time.perf_counter() - start}


def _cpu() -> float:
    mine = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def _mixes() -> dict[str, list[Any]]:
    sys.path.insert(0, str(HERE))
    from test_whatif import MIXES

    return {
        name: [str(s) if isinstance(s, Path) else s for s in mix] for name, mix in MIXES.items()
    }


def _in_process(src: str, *args: str) -> dict[str, float]:
    """`one(*args)` in a new interpreter that imports `dealengine` from `src`."""
    command = [sys.executable, __file__, "--one", *args]
    env = os.environ | {"PYTHONPATH": src}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        store, case, scenarios, warm_up = sys.argv[2:]
        print(json.dumps(one(store, case, json.loads(scenarios), warm_up == "1")))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_src", help="the src folder of the version to compare with")
    parser.add_argument("store", help="a SQLite store (benchmarks/dump.py build makes one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--warm-up", action="store_true", help="an untimed call first")
    args = parser.parse_args()
    mixes, cases = _mixes(), args.cases.split(",")
    trees = {"base": args.base_src, "this": str(HERE.parent / "src")}
    seen: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for case in cases:
            for version, src in trees.items():
                scenarios = json.dumps(mixes.get(case, []))
                run = _in_process(src, args.store, case, scenarios, "1" if args.warm_up else "0")
                seen.setdefault((case, version), []).append(run | {"load": os.getloadavg()[0]})
    print("| case | rounds | base CPU s | this CPU s | ratio | base wall s | this wall s | ratio |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for case in cases:
        base, this = seen[case, "base"], seen[case, "this"]
        cpu = [statistics.median(r["cpu"] for r in runs) for runs in (base, this)]
        wall = [statistics.median(r["wall"] for r in runs) for runs in (base, this)]
        print(
            f"| {case} | {len(base)} | {cpu[0]:.2f} | {cpu[1]:.2f} | {cpu[1] / cpu[0]:.3f} | "
            f"{wall[0]:.2f} | {wall[1]:.2f} | {wall[1] / wall[0]:.3f} |"
        )
    loads = [r["load"] for runs in seen.values() for r in runs]
    print(f"\n1-minute load average during the runs: {min(loads):.1f} to {max(loads):.1f}")


if __name__ == "__main__":
    main()
