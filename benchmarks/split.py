"""A full rebuild split by default (over the idle cores) against one process, in alternating
rounds on the same store, with the load before each round: the default must never be slower
than one process on a loaded machine (issue 21, item 2).

    python benchmarks/split.py STORE.db [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from dealengine import Engine, Settings
from dealengine.projections.passes import idle_cores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"default": [], "one process": []}
    for n in range(args.rounds):
        for case, processes in (("default", None), ("one process", 1)):
            load, split = os.getloadavg()[0], idle_cores() if processes is None else 1
            settings = Settings(db=str(args.store), database_url=None, rebuild_processes=processes)
            with Engine(settings) as engine:
                began = time.perf_counter()
                engine.views()
                times[case].append(time.perf_counter() - began)
            print(
                f"round {n}: {case}: {times[case][-1]:.3f} s ({split} processes, load {load:.1f})"
            )
    default, one = (statistics.median(times[c]) for c in ("default", "one process"))
    print(f"median: default {default:.3f} s, one process {one:.3f} s: {default / one:.2f}x")


if __name__ == "__main__":
    main()
