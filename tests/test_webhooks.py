"""Webhooks: their definitions, signatures, retries, parking and delivery log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dealengine import Engine
from dealengine.cli import app
from dealengine.domain.errors import InvalidDefinition
from dealengine.subscriptions.webhooks import (
    EVENT_ID,
    SIGNATURE,
    Webhook,
    load_webhooks,
    register_webhooks,
    sign,
    verify_signature,
)

SECRET = "whsec_0123456789abcdef"


def hook(**overrides: object) -> Webhook:
    fields: dict[str, object] = {
        "url": "http://127.0.0.1:9/hooks", "events": ["deal.stage_entered"], "secret": SECRET,
        "first_retry": 0.01, "longest_retry": 0.01, "retry_for": 0.03, "name": "crm",
    }  # fmt: skip
    return Webhook.model_validate({**fields, **overrides})


def test_a_signature_is_stripes_form_and_a_receiver_can_check_it() -> None:
    body = b'{"id": "e-1"}'
    header = sign(SECRET, body, 1_760_000_000)
    assert header.startswith("t=1760000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify_signature(SECRET, header, body, now=1_760_000_100)
    assert not verify_signature(SECRET, header, body + b" ", now=1_760_000_100)
    assert not verify_signature("whsec_another_secret_", header, body, now=1_760_000_100)
    assert not verify_signature(SECRET, header, body, now=1_760_001_000)  # too old: a replay


@pytest.mark.parametrize(
    ("url", "events", "reason"),
    [
        ("ftp://example.com/x", ["deal_won"], "http:// or https://"),
        ("file:///etc/passwd", ["deal_won"], "http:// or https://"),
        ("https://example.com/x", ["deal_wonn"], "unknown event 'deal_wonn'"),
    ],
)
def test_a_webhook_definition_is_refused_naming_the_key(
    tmp_path: Path, url: str, events: list[str], reason: str
) -> None:
    path = tmp_path / "webhooks.toml"
    path.write_text(
        f'[[webhooks]]\nurl = "{url}"\nsecret = "{SECRET}"\nevents = {json.dumps(events)}\n'
    )
    with pytest.raises(InvalidDefinition, match=reason) as refused:
        load_webhooks(path)
    assert refused.value.key.startswith("webhooks.0.")


def test_deliveries_are_signed_retried_on_5xx_and_logged(memory_engine: Engine) -> None:
    sent: list[tuple[bytes, dict[str, str]]] = []
    answers = iter([503, 200, 200])

    def send(h: Webhook, body: bytes, headers: dict[str, str]) -> int:
        sent.append((body, headers))
        return next(answers)

    memory_engine.record("deal_opened", "D-1", "2026-03-03T10:00:00Z", amount="10", owner="ana")
    memory_engine.record("proposal_sent", "D-1", "2026-03-04T10:00:00Z")
    [name] = register_webhooks(memory_engine.subscriptions, [hook()], run=False, send=send)
    memory_engine.subscriptions.catch_up(name)
    bodies = [json.loads(body) for body, _ in sent]
    assert [(b["type"], b["stage"]) for b in bodies] == [
        ("deal.stage_entered", "prospecting"), ("deal.stage_entered", "prospecting"),
        ("deal.stage_entered", "proposal"),
    ]  # fmt: skip
    body = bodies[-1]
    assert {"event_id", "type", "aggregate", "aggregate_id", "version", "occurred_at",
            "recorded_at", "payload", "stage", "from_stage"} <= body.keys()  # fmt: skip
    for raw, headers in sent:
        assert verify_signature(SECRET, headers[SIGNATURE], raw)
        assert headers[EVENT_ID] == json.loads(raw)["id"]
    log = memory_engine.subscriptions.tables.deliveries(name)
    assert [(d["attempt"], d["status"]) for d in reversed(log)] == [(1, 503), (2, 200), (1, 200)]


def test_a_4xx_parks_the_webhook_at_once_and_replay_delivers_it(memory_engine: Engine) -> None:
    answers = iter([410, 200])
    memory_engine.record("deal_opened", "D-1", "2026-03-03T10:00:00Z", amount="10", owner="ana")
    subs = memory_engine.subscriptions
    [name] = register_webhooks(subs, [hook()], run=False, send=lambda h, b, hd: next(answers))
    subs.catch_up(name)
    [(position, _)] = subs.status()
    assert (
        position.parked
        and position.parked_error == "Refused: HTTP 410 from http://127.0.0.1:9/hooks"
    )
    subs.replay(name, None)
    subs.catch_up(name)
    [(position, head)] = subs.status()
    assert not position.parked and position.position == head


def test_a_webhook_that_cannot_connect_is_parked_after_its_retry_time(
    memory_engine: Engine,
) -> None:
    memory_engine.record("deal_opened", "D-1", "2026-03-03T10:00:00Z", amount="10", owner="ana")
    subs = memory_engine.subscriptions
    [name] = register_webhooks(subs, [hook()], run=False)  # nothing listens on port 9
    subs.catch_up(name)
    [(position, _)] = subs.status()
    assert position.parked and "ConnectionRefusedError" in str(position.parked_error)
    assert len(subs.tables.deliveries(name)) >= 2


def test_the_cli_shows_status_and_replays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "store.db"
    monkeypatch.setenv("DEALENGINE_DB", str(db))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    with Engine() as engine:
        engine.record("deal_opened", "D-1", "2026-03-03T10:00:00Z", amount="10", owner="ana")
        engine.subscribe("crm", lambda n: None, types=["deal_won"], run=False)
    runner = CliRunner()
    status = runner.invoke(app, ["subscribers", "status", "--format", "json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout) == [
        {"name": "crm", "position": 0, "head": 1, "lag": 1, "parked_position": None,
         "parked_notice": None, "parked_error": None,
         "updated_at": json.loads(status.stdout)[0]["updated_at"]}
    ]  # fmt: skip
    replay = runner.invoke(app, ["subscribers", "replay", "crm"])
    assert replay.exit_code == 1 and "not parked: say --from N" in replay.output
    replay = runner.invoke(app, ["subscribers", "replay", "nobody", "--from", "1"])
    assert replay.exit_code == 1 and "no subscriber 'nobody'" in replay.output
    run = runner.invoke(app, ["subscribers", "run"])
    assert run.exit_code == 1 and "nothing to run" in run.output
