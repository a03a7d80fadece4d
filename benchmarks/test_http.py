"""The HTTP API's write path: single-interaction POSTs to `dealengine serve` (a separate
process, so client and server do not share a GIL), one client (latency p50, p99) and 8
concurrent clients (throughput), against `engine.record` in-process on the same store.

Each round records `n` new leads' `ad_viewed` (no duplicates). 'size' and 'events' are `n`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path

import httpx
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from dealengine import Engine
from harness import BACKENDS, SMOKE, measure

N = {"sqlite": 40 if SMOKE else 1_000, "pg": 40 if SMOKE else 500}
CLIENTS = 8
ROOT = Path(__file__).resolve().parents[1]
rounds = count()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(fresh: Callable[[], Engine]) -> Iterator[tuple[Engine, str, str]]:
    """A fresh store, an engine on it, and `dealengine serve` on it: (engine, url, key)."""
    engine = fresh()
    _, key = engine.keys.create("bench", "write")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), DEALENGINE_LOG_LEVEL="error")
    env.pop("DEALENGINE_DATABASE_URL", None)
    if engine.settings.database_url:
        env["DEALENGINE_DATABASE_URL"] = engine.settings.database_url
    else:
        env["DEALENGINE_DB"] = engine.settings.db
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dealengine.cli", "serve", "--port", str(port)], env=env
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/openapi.json", timeout=1)
            break
        except httpx.TransportError:
            assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
    try:
        yield engine, url, key
    finally:
        process.terminate()
        process.wait(timeout=30)


def lines(n: int) -> list[dict[str, str]]:
    r = next(rounds)
    return [
        {"type": "ad_viewed", "lead_id": f"B-{r}-{i}", "occurred_at": "2026-03-01T10:00:00Z",
         "channel": "paid", "campaign": "bench", "id": f"b-{r}-{i}"}
        for i in range(n)
    ]  # fmt: skip


def post_all(url: str, key: str, n: int, clients: int, latencies: list[float]) -> None:
    """POST `n` interactions, one per request, from `clients` threads (keep-alive each)."""
    work = lines(n)
    share = [work[i::clients] for i in range(clients)]

    def client(mine: list[dict[str, str]]) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            for line in mine:
                started = time.perf_counter()
                response = http.post("/v1/interactions", json=line)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 201, response.text

    threads = [threading.Thread(target=client, args=(s,)) for s in share]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(at(0.50) * 1e3, 2), "p99_ms": round(at(0.99) * 1e3, 2)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clients", [1, CLIENTS])
def test_http_post(
    benchmark: BenchmarkFixture, server: tuple[Engine, str, str], backend: str, clients: int
) -> None:
    _, url, key = server
    n = N[backend]
    latencies: list[float] = []
    measure(benchmark, lambda: post_all(url, key, n, clients, latencies), group="http-record",
            case=f"POST, {clients} client{'s' if clients > 1 else ''}", backend=backend, size=n,
            events=n, rounds=3)  # fmt: skip
    benchmark.extra_info.update(percentiles(latencies))


@pytest.mark.parametrize("backend", BACKENDS)
def test_engine_record(
    benchmark: BenchmarkFixture, fresh: Callable[[], Engine], backend: str
) -> None:
    engine = fresh()
    n = N[backend]
    latencies: list[float] = []

    def record_all() -> None:
        for line in lines(n):
            started = time.perf_counter()
            engine.record(line["type"], line["lead_id"], line["occurred_at"], channel="paid",
                          campaign="bench", idempotency_key=line["id"])  # fmt: skip
            latencies.append(time.perf_counter() - started)

    measure(benchmark, record_all, group="http-record", case="engine.record in-process",
            backend=backend, size=n, events=n, rounds=3)  # fmt: skip
    benchmark.extra_info.update(percentiles(latencies))
