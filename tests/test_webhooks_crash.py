"""Nothing lost, nothing reordered: a 10,000-event ingest while the worker delivering to a
webhook receiver (which fails 20% of requests) and a transactional subscriber is SIGKILLed 10
times; on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from dealengine import Engine, Settings
from dealengine.domain.interaction import Interaction
from dealengine.subscriptions.webhooks import EVENT_ID, SIGNATURE, verify_signature

EVENTS = int(os.environ.get("DEALENGINE_CRASH_EVENTS", "10000"))
KILLS = 10
SECRET = "whsec_0123456789abcdef"
LEAD_EVENTS = (
    ("ad_viewed", {"channel": "paid", "campaign": "spring"}),
    ("site_visited", {"channel": "organic", "page": "/pricing"}),
    ("newsletter_signed_up", {}),
    ("demo_requested", {}),
)


class Receiver:
    """A webhook receiver: refuses 20% of requests with a 500, checks every signature, and
    keeps the first delivery of each event id (it dedupes, as receivers are told to)."""

    def __init__(self) -> None:
        self.first: dict[str, dict[str, object]] = {}
        self.order: list[str] = []
        self.requests = 0
        self.bad_signatures = 0
        self.lock = threading.Lock()
        self.random = random.Random(19)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as receivers do

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests += 1
                    fail = receiver.random.random() < 0.2
                    if not verify_signature(SECRET, self.headers[SIGNATURE], body):
                        receiver.bad_signatures += 1
                        fail = True
                    elif not fail:
                        event_id = self.headers[EVENT_ID]
                        if event_id not in receiver.first:
                            receiver.first[event_id] = orjson.loads(body)
                            receiver.order.append(event_id)
                self.send_response(500 if fail else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/deals"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def worker_env(settings: Settings, hooks: Path) -> dict[str, str]:
    env = dict(os.environ, DEALENGINE_WEBHOOKS=str(hooks), DEALENGINE_LOG_LEVEL="error")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parents[1] / "src"), str(Path(__file__).parents[1])]
    )
    if settings.database_url:
        env["DEALENGINE_DATABASE_URL"] = settings.database_url
    else:
        env.pop("DEALENGINE_DATABASE_URL", None)
        env["DEALENGINE_DB"] = settings.db
    return env


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.subscriber_worker"], env=env, cwd=Path(__file__).parents[1]
    )


def test_every_event_arrives_once_in_order_through_ten_kills(
    settings: Settings, tmp_path: Path, receiver: Receiver
) -> None:
    hooks = tmp_path / "webhooks.toml"
    hooks.write_text(
        f'[[webhooks]]\nname = "crm"\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n'
        f"events = {[t for t, _ in LEAD_EVENTS]!r}\n"
        "first_retry = 0.01\nlongest_retry = 0.05\nretry_for = 60\n".replace("'", '"')
    )
    env = worker_env(settings, hooks)
    rng = random.Random(7)
    with Engine(settings) as engine:
        worker = start_worker(env)
        kills, leads = 0, EVENTS // len(LEAD_EVENTS)
        kill_after = sorted(rng.sample(range(1, leads), KILLS))  # leads recorded before each kill
        deadline = time.monotonic() + 240
        for start in range(0, leads, 100):
            engine.execute_batch([
                Interaction(t, f"L-{n}", f"2026-03-{1 + i:02d}T10:00:00Z", dict(f), "test", "test", f"k-{n}-{i}")
                for n in range(start, min(start + 100, leads)) for i, (t, f) in enumerate(LEAD_EVENTS)
            ])  # fmt: skip
            while kills < KILLS and kill_after[kills] <= start + 100:
                time.sleep(rng.uniform(0.05, 0.4))  # let it get somewhere first
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=10)
                kills += 1
                worker = start_worker(env)
        head = engine.store.position()
        try:
            while True:  # the last worker catches up
                status = {p.name: p for p, _ in engine.subscriptions.status()}
                if all(
                    status.get(n) and status[n].position == head for n in ("webhook:crm", "ledger")
                ):
                    break
                assert worker.poll() is None, "the worker died"
                assert time.monotonic() < deadline, f"not caught up: {status}"
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
        assert kills == KILLS
        assert not any(p.parked for p, _ in engine.subscriptions.status())
        expected = [str(e.data["id"]) for e in engine.events() if e.type in dict(LEAD_EVENTS)]
        tables = engine.subscriptions.tables
        with tables.transaction(commit=False) as c:
            c.execute(tables.sql("SELECT notice, stream, version FROM {p}ledger"))
            ledger = [(r["notice"], r["stream"], r["version"]) for r in c.fetchall()]
    assert len(expected) == EVENTS
    # the transactional subscriber: every event and derived notice exactly once
    events_in_ledger = [n for n, _, _ in ledger if "/" not in n]
    assert sorted(events_in_ledger) == sorted(expected)
    assert len({n for n, _, _ in ledger}) == len(ledger)
    # the webhook: every event, in order per lead, signed; failures and kills only repeat
    assert receiver.bad_signatures == 0
    assert sorted(receiver.first) == sorted(expected)
    assert receiver.order == expected  # one worker at a time, in recorded order
    versions: dict[str, int] = {}
    for event_id in receiver.order:
        body = receiver.first[event_id]
        lead, version = str(body["aggregate_id"]), int(str(body["version"]))
        assert version == versions.get(lead, 0) + 1
        versions[lead] = version
    assert receiver.requests > EVENTS  # some were refused and sent again
