"""The HTTP API against a real uvicorn server on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from dealengine import Engine, Settings
from dealengine.http.app import Limits
from tests.http_server import serving

PROBLEM = "application/problem+json"


@dataclass
class Api:
    url: str
    engine: Engine
    keys: dict[str, str]

    def client(self, scope: str | None = "admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[scope]}"} if scope else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def api(engine: Engine) -> Iterator[Api]:
    keys = {scope: engine.keys.create(f"test-{scope}", scope)[1]
            for scope in ("read", "write", "audit", "admin")}  # fmt: skip
    with serving(engine, Limits(max_body=20_000, max_items=50, key_cache_seconds=0)) as url:
        yield Api(url, engine, keys)


OPENED = {"type": "deal_opened", "deal_id": "D-1", "occurred_at": "2026-03-03T10:00:00Z",
          "amount": "12000", "owner": "ana", "id": "crm-1"}  # fmt: skip


def test_an_interaction_is_recorded_once_with_its_location(api: Api) -> None:
    with api.client("write") as http:
        first = http.post("/v1/interactions", json=OPENED)
        again = http.post("/v1/interactions", json=OPENED)
    assert first.status_code == 201, first.text
    assert first.headers["Location"] == "/v1/deals/D-1"
    [event] = first.json()["events"]
    assert (event["type"], event["aggregate_id"], event["version"]) == ("deal_opened", "D-1", 1)
    assert event["fields"]["amount"] == "12000" and event["idempotency_key"] == "crm-1"
    assert (again.status_code, again.json()) == (200, {"events": []})


def test_an_array_is_recorded_whole_keyed_by_the_idempotency_key_header(api: Api) -> None:
    lines = [
        {"type": "ad_viewed", "lead_id": "L-1", "occurred_at": "2026-03-01T10:00:00Z",
         "channel": "paid", "campaign": "spring"},
        {"type": "lead_qualified", "lead_id": "L-1", "occurred_at": "2026-03-02T10:00:00Z", "by": "sdr"},
    ]  # fmt: skip
    with api.client("write") as http:
        made = http.post("/v1/interactions", json=lines, headers={"Idempotency-Key": "batch-7"})
        again = http.post("/v1/interactions", json=lines, headers={"Idempotency-Key": "batch-7"})
        refused = http.post(
            "/v1/interactions", json=[lines[0], {**lines[1], "type": "lead_qualifed"}]
        )
    assert made.status_code == 201
    assert [e["idempotency_key"] for e in made.json()["events"]] == ["batch-7:0", "batch-7:1"]
    assert again.status_code == 200
    assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
    assert refused.json()["pointer"] == "/1/type"
    assert len(api.engine.history("L-1")) == 2  # nothing of the refused array was stored


def test_a_stage_rule_refusal_is_a_409_problem_naming_the_rule(api: Api) -> None:
    with api.client("write") as http:
        http.post("/v1/interactions", json=OPENED)
        http.post("/v1/interactions", json={"type": "proposal_sent", "deal_id": "D-1",
                                            "occurred_at": "2026-03-04T10:00:00Z"})  # fmt: skip
        back = http.post("/v1/interactions", json={"type": "discovery_completed", "deal_id": "D-1",
                                                   "occurred_at": "2026-03-05T10:00:00Z"})  # fmt: skip
    assert back.status_code == 409 and back.headers["content-type"] == PROBLEM
    problem = back.json()
    assert (problem["status"], problem["title"]) == (409, "Stage rule")
    assert (problem["aggregate"], problem["current"], problem["attempted"]) == (
        "deal D-1", "proposal", "discovery_completed",
    )  # fmt: skip
    assert "backward" in problem["reason"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "deal_opened", "occurred_at": "2026-03-03T10:00:00Z"}, "deal_id"),
        ({"deal_id": "D-2", "occurred_at": "2026-03-03T10:00:00Z"}, "type"),
        ({**OPENED, "occurred_at": "2026-03-03T10:00:00"}, "occurred_at"),
        ({**OPENED, "amount": "lots"}, "amount"),
    ],
)
def test_an_invalid_interaction_is_a_422_problem_naming_the_field(
    api: Api, body: dict[str, str], field: str
) -> None:
    with api.client("write") as http:
        refused = http.post("/v1/interactions", json=body)
    assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
    assert refused.json()["field"] == field, refused.json()


def test_bodies_too_large_or_not_json_are_refused(api: Api) -> None:
    with api.client("write") as http:
        big = http.post("/v1/interactions", content=b"[" + b" " * 30_000 + b"]",
                        headers={"Content-Type": "application/json"})  # fmt: skip
        many = http.post("/v1/interactions", json=[OPENED] * 51)
        broken = http.post(
            "/v1/interactions", content=b"{nope", headers={"Content-Type": "application/json"}
        )
    assert big.status_code == 413 and many.status_code == 422 and broken.status_code == 422
    assert {r.headers["content-type"] for r in (big, many, broken)} == {PROBLEM}


def test_a_deal_is_read_with_its_version_as_etag_as_of_a_time(api: Api) -> None:
    with api.client("write") as http:
        http.post("/v1/interactions", json=OPENED)
        http.post("/v1/interactions", json={"type": "proposal_sent", "deal_id": "D-1",
                                            "occurred_at": "2026-03-04T10:00:00Z"})  # fmt: skip
    with api.client("read") as http:
        now = http.get("/v1/deals/D-1")
        before = http.get("/v1/deals/D-1", params={"as_of": "2026-03-03"})
        unchanged = http.get("/v1/deals/D-1", headers={"If-None-Match": '"2"'})
        missing = http.get("/v1/deals/D-404")
        lead = http.get("/v1/leads/L-404")
        history = http.get("/v1/deals/D-1/history")
        bad_time = http.get("/v1/deals/D-1", params={"as_of": "soon"})
    assert now.status_code == 200 and now.headers["ETag"] == '"2"'
    assert (now.json()["stage"], now.json()["amount"]) == ("proposal", "12000")
    assert before.json()["stage"] == "prospecting" and before.headers["ETag"] == '"1"'
    assert unchanged.status_code == 304
    assert missing.status_code == lead.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    assert [e["type"] for e in history.json()] == ["deal_opened", "proposal_sent"]
    assert bad_time.status_code == 422 and bad_time.json()["field"] == "as_of"


def test_if_match_records_only_on_the_version_the_client_saw(api: Api) -> None:
    won = {"type": "deal_won", "occurred_at": "2026-03-06T10:00:00Z", "amount": "12000"}
    with api.client("write") as http:
        http.post("/v1/interactions", json=OPENED)
        seen = http.get("/v1/deals/D-1").headers["ETag"]
        moved = http.post("/v1/deals/D-1/interactions", json={"type": "proposal_sent",
                          "occurred_at": "2026-03-04T10:00:00Z"}, headers={"If-Match": seen})  # fmt: skip
        stale = http.post("/v1/deals/D-1/interactions", json=won, headers={"If-Match": seen})
        fresh = http.post("/v1/deals/D-1/interactions", json=won,
                          headers={"If-Match": moved.headers["ETag"]})  # fmt: skip
    assert moved.status_code == 201 and moved.headers["ETag"] == '"2"'
    assert stale.status_code == 412 and stale.headers["content-type"] == PROBLEM
    assert stale.json()["current_version"] == 2 and stale.headers["ETag"] == '"2"'
    assert fresh.status_code == 201 and fresh.headers["ETag"] == '"3"'


@pytest.fixture
def info_logs() -> Iterator[None]:
    previous = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    yield
    structlog.configure(**previous)


def test_keys_are_needed_and_scoped_and_never_logged(api: Api, info_logs: None) -> None:
    with capture_logs() as logs:
        with api.client(None) as http:
            none = http.get("/v1/funnel")
            wrong = http.get("/v1/funnel", headers={"Authorization": "Bearer dek_nope_nope"})
        with api.client("read") as http:
            read_write = http.post("/v1/interactions", json=OPENED)
            read_verify = http.get("/v1/verify")
            read_funnel = http.get("/v1/funnel")
        with api.client("audit") as http:
            audit_write = http.post("/v1/interactions", json=OPENED)
            verify = http.get("/v1/verify")
        with api.client("write") as http:
            write_audit = http.get("/v1/audit/D-1")
    assert none.status_code == wrong.status_code == 401
    assert none.headers["WWW-Authenticate"].startswith("Bearer")
    assert read_write.status_code == read_verify.status_code == audit_write.status_code == 403
    assert write_audit.status_code == 403
    assert read_funnel.status_code == 200 and verify.status_code == 200 and verify.json()["ok"]
    assert read_write.json()["needed"] == "write"
    text = repr(logs)
    assert "http.refused" in text and "http.request" in text
    assert not any(key in text for key in api.keys.values())
    # a revoked key stops working
    key_id = api.keys["read"].split("_")[1]
    api.engine.keys.revoke(key_id)
    with api.client("read") as http:
        assert http.get("/v1/funnel").status_code == 401


def test_funnel_pipeline_whatif_and_audit_answer_as_the_cli(api: Api) -> None:
    with api.client("write") as http:
        http.post("/v1/interactions", json=[
            {"type": "ad_viewed", "lead_id": "L-1", "occurred_at": "2026-03-01T10:00:00Z", "channel": "paid", "campaign": "c"},
            {"type": "lead_qualified", "lead_id": "L-1", "occurred_at": "2026-03-02T10:00:00Z", "by": "sdr"},
            {**OPENED, "lead_id": "L-1"},
        ])  # fmt: skip
    with api.client("admin") as http:
        funnel = http.get("/v1/funnel")
        ordered = http.get("/v1/funnel", params={"mode": "ordered", "window": 30})
        pipeline = http.get("/v1/pipeline")
        deals = http.get("/v1/pipeline", params={"deals": True})
        changes = http.get(
            "/v1/pipeline", params={"changes_from": "2026-03-01", "changes_to": "2026-03-31"}
        )
        whatif = http.post("/v1/whatif", json={"scenarios": [{"question": "30 days?", "funnel": {
            "mode": "ordered", "conversion_window_days": 30}}]})  # fmt: skip
        bad_whatif = http.post("/v1/whatif", json={"scenarios": "no"})
        audit = http.get("/v1/audit/D-1")
    assert funnel.status_code == 200 and funnel.json()["steps"][0]["leads"] == 1
    assert "view" in funnel.json()
    assert ordered.status_code == 200 and "view" not in ordered.json()
    assert pipeline.status_code == 200 and pipeline.json()["stages"][0]["open_deals"] == 1
    assert deals.json()[0]["deal_id"] == "D-1"
    assert changes.status_code == 200
    assert whatif.status_code == 200, whatif.text
    assert list(whatif.json()["scenarios"]) == ["scenario-1"]
    assert bad_whatif.status_code == 422
    assert audit.status_code == 200 and audit.json()["integrity"]["intact"]


def read_events(
    http: httpx.Client, count: int, types: str | None = None, **headers: str
) -> list[tuple[str, str]]:
    """(id, type) of the next `count` server-sent events."""
    got: list[tuple[str, str]] = []
    params: dict[str, object] = {"limit": count, **({"types": types} if types else {})}
    with http.stream("GET", "/v1/events", params=params, headers=headers) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        message: dict[str, str] = {}
        for line in stream.iter_lines():
            if not line:
                if message:
                    got.append((message["id"], message["event"]))
                message = {}
                continue
            field, _, value = line.partition(": ")
            if field:  # not a comment (a keep-alive)
                message[field] = value
    return got


def test_server_sent_events_resume_from_last_event_id(api: Api) -> None:
    with api.client("write") as http:
        http.post("/v1/interactions", json=OPENED)
        http.post("/v1/interactions", json={"type": "proposal_sent", "deal_id": "D-1",
                                            "occurred_at": "2026-03-04T10:00:00Z"})  # fmt: skip
    with api.client("read") as http:
        first = read_events(http, 3)
        rest = read_events(http, 1, **{"Last-Event-ID": first[-1][0]})
        with api.client("write") as writer:
            writer.post("/v1/interactions", json={"type": "deal_won", "deal_id": "D-1",
                        "occurred_at": "2026-03-05T10:00:00Z", "amount": "12000"})  # fmt: skip
        live = read_events(http, 2, **{"Last-Event-ID": rest[-1][0]})
        won_only = read_events(http, 1, **{"Last-Event-ID": "0"}, types="deal_won")
    assert first == [
        ("1.1", "deal_opened"),
        ("1.2", "deal.stage_entered"),
        ("2.1", "proposal_sent"),
    ]
    assert rest == [("2.2", "deal.stage_entered")]  # the rest of event 2, not all of it again
    assert live == [("3.1", "deal_won"), ("3.2", "deal.stage_entered")]
    assert won_only == [("3.1", "deal_won")]


def test_the_openapi_contract_and_docs_are_served(api: Api) -> None:
    with api.client(None) as http:
        schema = http.get("/openapi.json")
        docs = http.get("/docs")
    assert schema.status_code == 200 and docs.status_code == 200
    assert {"/v1/interactions", "/v1/deals/{deal_id}", "/v1/events", "/v1/whatif"} <= schema.json()[
        "paths"
    ].keys()


def test_a_deal_endpoint_refuses_a_leads_event_and_if_match_star_needs_the_deal(api: Api) -> None:
    with api.client("write") as http:
        lead_event = http.post("/v1/deals/D-1/interactions", json={
            "type": "ad_viewed", "occurred_at": "2026-03-01T10:00:00Z", "channel": "paid"})  # fmt: skip
        absent = http.post("/v1/deals/D-1/interactions", headers={"If-Match": "*"}, json={
            k: v for k, v in OPENED.items() if k != "deal_id"})  # fmt: skip
        http.post("/v1/interactions", json=OPENED)
        present = http.post("/v1/deals/D-1/interactions", headers={"If-Match": "*"}, json={
            "type": "proposal_sent", "occurred_at": "2026-03-04T10:00:00Z"})  # fmt: skip
    assert lead_event.status_code == 422 and lead_event.json()["field"] == "type"
    assert absent.status_code == 412
    assert present.status_code == 201 and present.headers["ETag"] == '"2"'


def test_webhooks_added_through_the_api_are_delivered_and_removed(api: Api) -> None:
    from tests.test_webhooks_crash import SECRET, Receiver

    with Receiver() as receiver:
        receiver.random.random = lambda: 1.0  # type: ignore[method-assign]  # never fails
        hook = {"name": "crm", "url": receiver.url, "secret": SECRET, "events": ["deal_opened"]}
        with api.client("admin") as http:
            added = http.post("/v1/webhooks", json=hook)
            twice = http.post("/v1/webhooks", json=hook)
            ftp = http.post("/v1/webhooks", json={**hook, "name": "x", "url": "ftp://h/x"})
            listed = http.get("/v1/webhooks")
        with api.client("write") as http:
            forbidden = http.post("/v1/webhooks", json=hook)
            http.post("/v1/interactions", json=OPENED)
        api.engine.subscriptions.refresh_every = 0.1
        api.engine.subscriptions.start_webhooks()
        deadline = time.monotonic() + 20
        while not receiver.first:
            assert time.monotonic() < deadline, "not delivered"
            time.sleep(0.05)
        with api.client("admin") as http:
            removed = http.delete("/v1/webhooks/crm")
            again = http.delete("/v1/webhooks/crm")
    assert added.status_code == 201 and added.headers["Location"] == "/v1/webhooks/crm"
    assert twice.status_code == 409 and twice.headers["content-type"] == PROBLEM
    assert ftp.status_code == 422 and ftp.json()["field"] == "url"
    assert forbidden.status_code == 403
    assert [h["subscriber"] for h in listed.json()] == ["webhook:crm"]
    assert SECRET not in listed.text
    [body] = receiver.first.values()
    assert (body["type"], body["aggregate_id"]) == ("deal_opened", "D-1")
    assert removed.status_code == 204 and again.status_code == 404


EURUSD = {"from": "eur", "to": "USD", "rate": "1.0850", "effective_from": "2026-03-01"}


def test_exchange_rates_are_set_listed_and_voided(api: Api) -> None:
    """Given a rate set through the API (a write key), then the same again, an array with a
    bad rate, and a void: the first is recorded once, the array stores nothing and names the
    field, the list shows the rate as `rates list --format json` does, and not once voided."""
    with api.client("write") as http:
        first = http.post("/v1/rates", json=EURUSD)
        again = http.post("/v1/rates", json=EURUSD)
        bad = http.post("/v1/rates", json=[{**EURUSD, "rate": "1.1"}, {**EURUSD, "rate": "-2"}])
        missing = http.post("/v1/rates", json={"from": "EUR", "to": "USD", "rate": "1.1"})
    assert first.status_code == 201, first.text
    [event] = first.json()["events"]
    assert (event["type"], event["aggregate_id"], event["version"]) == (
        "exchange_rate_set", "EUR-USD", 1
    )  # fmt: skip
    assert (again.status_code, again.json()) == (200, {"events": []})
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert bad.json()["pointer"] == "/1/rate" and "field 'rate'" in bad.json()["detail"]
    assert missing.status_code == 422 and missing.json()["field"] == "effective_from"
    with api.client("read") as http:
        listed = http.get("/v1/rates").json()
        then = http.get("/v1/rates", params={"as_of": "2026-02-01"}).json()
        refused = http.post("/v1/rates", json=EURUSD)
    assert [(r["from"], r["to"], r["rate"], r["effective_from"], r["actor"], r["source"])
            for r in listed] == [("EUR", "USD", "1.0850", "2026-03-01", "http", "http")]  # fmt: skip
    assert listed[0]["id"] == event["id"] and then == []
    assert refused.status_code == 403
    with api.client("write") as http:
        void = {"from": "EUR", "to": "USD", "id": event["id"], "reason": "typo"}
        voided = http.post("/v1/rates/void", json=void)
        unknown = http.post("/v1/rates/void", json={**void, "to": "GBP"})
        left = http.get("/v1/rates", headers={"Authorization": f"Bearer {api.keys['read']}"})
    assert voided.status_code == 201 and voided.json()["events"][0]["type"] == (
        "exchange_rate_voided"
    )
    assert unknown.status_code == 404 and left.json() == []


def test_a_lead_is_forgotten_through_the_api_by_an_admin_key(tmp_path: Path) -> None:
    """Given a lead identified through the API, when an admin key asks to forget it, then a
    lead_forgotten is recorded (who: http, why: the reason) and its history reads [erased];
    a write key is refused, an unknown lead is a 404, a request without a reason a 422."""
    settings = Settings(db=str(tmp_path / "s.db"), database_url=None)
    with Engine(settings) as engine:
        keys = {s: engine.keys.create(f"test-{s}", s)[1] for s in ("write", "admin")}
        with serving(engine) as url:

            def client(scope: str) -> httpx.Client:
                return httpx.Client(base_url=url, timeout=30,
                                    headers={"Authorization": f"Bearer {keys[scope]}"})  # fmt: skip

            with client("write") as http:
                identified = http.post("/v1/interactions", json={
                    "type": "lead_identified", "lead_id": "L-1", "email": "ana@example.com",
                    "occurred_at": "2026-03-01T10:00:00Z"})  # fmt: skip
                refused = http.post("/v1/leads/L-1/forget", json={"reason": "asked"})
            with client("admin") as http:
                forgotten = http.post("/v1/leads/L-1/forget", json={"reason": "asked by email"})
                unknown = http.post("/v1/leads/L-9/forget", json={"reason": "asked"})
                no_reason = http.post("/v1/leads/L-1/forget", json={})
                history = http.get("/v1/leads/L-1/history").json()
    assert identified.status_code == 201 and refused.status_code == 403
    assert forgotten.status_code == 201, forgotten.text
    assert forgotten.headers["Location"] == "/v1/leads/L-1"
    [event] = forgotten.json()["events"]
    assert (event["type"], event["actor"], event["fields"]["reason"]) == (
        "lead_forgotten", "http", "asked by email"
    )  # fmt: skip
    assert unknown.status_code == 404 and no_reason.status_code == 422
    assert no_reason.json()["field"] == "reason"
    assert [e["type"] for e in history] == ["lead_identified", "lead_forgotten"]
    assert "ana@example.com" not in str(history) and "[erased]" in str(history)
