"""Every benchmark case (benchmarks/), run once on a tiny history, so the suite cannot rot.

The baselines' own checks run too: each must compute the same funnel and pipeline as the engine.
PostgreSQL cases skip without a server, like the tests, and fail with DEALENGINE_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_a_new_run_keeps_the_sections_of_results_measured_by_hand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_run", run)  # its dataclasses look themselves up
    spec.loader.exec_module(run)
    by_hand = "<!-- measured by hand: run.py keeps what follows -->\n## Verify\n\n| a | b |\n"
    assert run.kept(f"# dealengine benchmarks\n\n## Rebuild\n\n| x |\n\n{by_hand}") == (
        "\n" + by_hand
    )
    assert run.kept("# dealengine benchmarks\n\n## Rebuild\n\n| x |\n") == ""


def test_rounds_times_a_case_by_wall_and_cpu_on_a_tiny_history(tmp_path: Path) -> None:
    env = os.environ | {"DEALENGINE_BENCH_CACHE": str(tmp_path)}
    script = str(ROOT / "benchmarks" / "rounds.py")
    for case, rounds in (("verify", 2), ("ingest", 1), ("es_save", 1)):
        result = subprocess.run(
            [sys.executable, script, "smoke", case, "sqlite", str(rounds), "300"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [(r["tag"], r["case"], r["backend"]) for r in lines] == [
            ("smoke", case, "sqlite")
        ] * rounds
        assert all(r["wall"] > 0 and r["cpu"] > 0 for r in lines)
