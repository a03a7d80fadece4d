"""The host's commands as processes: `subscribers run` delivers and stops on SIGTERM, `keys`
shows a key once and keeps its hash, `serve` answers with the key it was given."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from dealengine import Engine, Settings
from dealengine.cli import app
from tests.http_server import free_port
from tests.test_webhooks_crash import SECRET, Receiver

ROOT = Path(__file__).resolve().parents[1]


def env_for(db: Path, **more: str) -> dict[str, str]:
    env = dict(os.environ, DEALENGINE_DB=str(db), PYTHONPATH=str(ROOT / "src"), **more)
    env.pop("DEALENGINE_DATABASE_URL", None)
    return env


def test_subscribers_run_delivers_the_webhooks_until_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    with Receiver() as receiver, Engine(Settings(db=str(db), database_url=None)) as engine:
        receiver.random.random = lambda: 1.0  # type: ignore[method-assign]  # never fails
        hooks = tmp_path / "webhooks.toml"
        hooks.write_text(f'[[webhooks]]\nname = "crm"\nurl = "{receiver.url}"\n'
                         f'secret = "{SECRET}"\nevents = ["deal.stage_entered"]\n')  # fmt: skip
        engine.record("deal_opened", "D-1", "2026-03-03T10:00:00Z", amount="10", owner="ana")
        engine.record("proposal_sent", "D-1", "2026-03-04T10:00:00Z")
        worker = subprocess.Popen(
            [sys.executable, "-m", "dealengine.cli", "subscribers", "run"],
            env=env_for(db, DEALENGINE_WEBHOOKS=str(hooks)),
        )
        try:
            deadline = time.monotonic() + 30
            while len(receiver.first) < 2:
                assert worker.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
        stages = [body["stage"] for body in receiver.first.values()]
        assert stages == ["prospecting", "proposal"]
        [(position, head)] = engine.subscriptions.status()
        assert (position.name, position.position) == ("webhook:crm", head)


def test_a_key_is_printed_once_and_only_its_hash_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "store.db"
    monkeypatch.setenv("DEALENGINE_DB", str(db))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    runner = CliRunner()
    made = runner.invoke(app, ["keys", "create", "--name", "crm", "--scope", "write"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("dek_")
    assert key.encode() not in db.read_bytes()
    listed = runner.invoke(app, ["keys", "list", "--format", "json"])
    [row] = __import__("json").loads(listed.stdout)
    assert (row["name"], row["scope"], row["revoked_at"]) == ("crm", "write", None)
    assert key not in listed.stdout
    bad = runner.invoke(app, ["keys", "create", "--name", "x", "--scope", "root"])
    assert bad.exit_code == 1 and "unknown scope 'root'" in bad.output
    revoked = runner.invoke(app, ["keys", "revoke", "crm"])
    assert revoked.exit_code == 0
    again = runner.invoke(app, ["keys", "revoke", "crm"])
    assert again.exit_code == 1 and "no active key 'crm'" in again.output


def test_serve_answers_with_a_key_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    with Engine(Settings(db=str(db), database_url=None)) as engine:
        _, key = engine.keys.create("t", "read")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "dealengine.cli", "serve", "--port", str(port)], env=env_for(db)
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/v1/funnel",
                                   headers={"Authorization": f"Bearer {key}"}, timeout=2)  # fmt: skip
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        assert answer.status_code == 200 and answer.json()["steps"][0]["leads"] == 0
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
