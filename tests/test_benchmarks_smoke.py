"""Every benchmark case (benchmarks/), run once on a tiny history, so the suite cannot rot.

The baselines' own checks run too: each must compute the same funnel and pipeline as the engine.
PostgreSQL cases skip without a server, like the tests, and fail with DEALENGINE_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_benchmark_case_runs_on_a_tiny_history(tmp_path: Path) -> None:
    env = os.environ | {"DEALENGINE_BENCH_SMOKE": "1", "DEALENGINE_BENCH_CACHE": str(tmp_path)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "benchmarks",
            "--benchmark-disable",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
