"""Start-up: `dealengine --help` in a new process (target: at most 0.3 s), beside a bare
`python -c pass` (what any command pays before dealengine runs).

Its group needs a title in run.py's TITLES: "startup": "Start-up of `dealengine --help` ...".
'lines' and 'events' are 1: the case reads no store.
"""

from __future__ import annotations

import subprocess
import sys

from pytest_benchmark.fixture import BenchmarkFixture

from harness import measure

HELP = [sys.executable, "-m", "dealengine.cli", "--help"]
BARE = [sys.executable, "-c", "pass"]


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def test_startup_help(benchmark: BenchmarkFixture) -> None:
    measure(benchmark, lambda: _run(HELP), group="startup", case="dealengine --help",
            size=1, events=1, rounds=10)  # fmt: skip


def test_startup_bare_python(benchmark: BenchmarkFixture) -> None:
    measure(benchmark, lambda: _run(BARE), group="startup", case="python -c pass",
            size=1, events=1, rounds=10)  # fmt: skip
