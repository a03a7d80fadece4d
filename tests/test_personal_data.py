"""Personal data, erasable (issue 20, items 2 and 3): a lead's email, name, phone and company are
sealed with a key per lead before the event is hashed; `forget` destroys the key, records
`lead_forgotten`, and leaves nothing readable behind, while the audit trail and every figure
stay as they were."""

from __future__ import annotations

import base64
import io
import logging
import re
import subprocess
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Annotated, ClassVar

import orjson
import psycopg
import pytest
import structlog
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from typer.testing import CliRunner

from dealengine import Engine, InvalidEvent, Settings, StoreError, UnknownAggregate
from dealengine.cli import app
from dealengine.domain.events import DealEvent, LeadIdentified, Text
from dealengine.domain.personal import (
    ERASED,
    PERSONAL,
    LeadKey,
    new_lead_key,
    personal_fields,
    seal,
    unseal,
)
from dealengine.logs import configure

from .conftest import PG_URL, Clock, need_postgres


@pytest.fixture
def own_database_url() -> Iterator[str]:
    """A PostgreSQL database of its own, with a schema `erasure`, dropped afterwards.

    VACUUM removes a deleted row only once no transaction of the same database may still see
    it: in the shared test database other work's long queries would hold the erased key back
    (forget then fails, saying so: test_on_postgresql_forget_waits_for_older_transactions)."""
    need_postgres()
    name = f"erasure_{uuid.uuid4().hex[:12]}"
    server = PG_URL.split("?")[0].rsplit("/", 1)[0]
    with psycopg.connect(PG_URL.split("?")[0], autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(f"{server}/{name}", autocommit=True) as conn:
        conn.execute("CREATE SCHEMA erasure")
    yield f"{server}/{name}?schema=erasure"
    with psycopg.connect(PG_URL.split("?")[0], autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """conftest's stores, PostgreSQL in a database of its own (see own_database_url)."""
    if request.param == "sqlite":
        return Settings(db=str(tmp_path / "store.db"), database_url=None)
    return Settings(database_url=request.getfixturevalue("own_database_url"))


EMAIL = "ana.erasure@example.com"
NAME = "Ana Erasure-Example"
PHONE = "+55 11 98765-4321"


# --- the sealed value: format and cipher, checked with the cryptography package directly ---------


def test_a_sealed_value_is_aes_gcm_in_the_documented_format() -> None:
    key = new_lead_key()
    sealed = seal(EMAIL, key, "lead:L-1", "email")
    match = re.fullmatch(r"enc:v1:([0-9a-f]{32}):([A-Za-z0-9_-]+):([A-Za-z0-9_-]+)", sealed)
    assert match is not None and match.group(1) == key.id
    nonce, ct = (base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in match.groups()[1:])
    assert len(nonce) == 12 and len(ct) == len(EMAIL.encode()) + 16  # 16: the GCM tag
    aad = f"dealengine-personal-v1\n{key.id}\nlead:L-1\nemail".encode()
    assert AESGCM(key.secret).decrypt(nonce, ct, aad) == EMAIL.encode()
    assert EMAIL not in sealed and key.secret.hex() not in sealed
    assert seal(EMAIL, key, "lead:L-1", "email") != sealed  # a fresh nonce each time


def test_a_sealed_value_opens_only_in_its_place_and_reads_erased_without_its_key() -> None:
    key = new_lead_key()
    sealed = seal(EMAIL, key, "lead:L-1", "email")
    assert unseal(sealed, {key.id: key.secret}, "lead:L-1", "email") == EMAIL
    assert unseal(sealed, {}, "lead:L-1", "email") == ERASED
    with pytest.raises(InvalidEvent, match="lead:L-2: field 'email': its sealed value does not"):
        unseal(sealed, {key.id: key.secret}, "lead:L-2", "email")  # moved to another lead
    with pytest.raises(InvalidEvent, match="field 'name'"):
        unseal(sealed, {key.id: key.secret}, "lead:L-1", "name")


def test_a_key_is_never_shown() -> None:
    key = new_lead_key()
    for shown in (repr(key), str(key), f"{key}", repr([key]), repr({"k": key})):
        assert key.secret.hex() not in shown and repr(key.secret) not in shown


def test_lead_identified_marks_its_four_fields_personal() -> None:
    assert personal_fields(LeadIdentified) == {"email", "name", "phone", "company"}


# --- recording lead_identified -------------------------------------------------------------------


def visited(engine: Engine, lead: str, at: str = "2026-03-01T10:00:00Z") -> None:
    engine.record("site_visited", lead, at, channel="web")


def test_lead_identified_needs_one_field_and_may_start_a_lead(memory_engine: Engine) -> None:
    """Like any interaction but qualify, disqualify and convert, it may be a lead's first
    event; it counts in no funnel step (none names it)."""
    memory_engine.record("lead_identified", "L-0", "2026-03-01T09:00:00Z", email=EMAIL)
    assert [s.leads for s in memory_engine.funnel().steps] == [0] * 7
    visited(memory_engine, "L-1")
    with pytest.raises(InvalidEvent) as refused:
        memory_engine.record("lead_identified", "L-1", "2026-03-01T11:00:00Z")
    assert str(refused.value) == (
        "lead_identified: field 'email', 'name', 'phone' or 'company': give one at least"
    )
    assert len(memory_engine.history("L-1")) == 1  # nothing stored


def test_a_bad_personal_value_is_refused_without_being_shown(memory_engine: Engine) -> None:
    visited(memory_engine, "L-1")
    secret_ish = "ana\nsecret-name@example.com"
    with pytest.raises(InvalidEvent) as refused:
        memory_engine.record("lead_identified", "L-1", "2026-03-01T11:00:00Z", email=secret_ish)
    message = str(refused.value)
    assert message.startswith("lead_identified: field 'email': must not contain control")
    assert "secret-name" not in message and "\n" not in message
    with pytest.raises(InvalidEvent) as too_long:
        memory_engine.record("lead_identified", "L-1", "2026-03-01T11:00:00Z", name="N" * 501)
    assert "NNNN" not in str(too_long.value) and "field 'name'" in str(too_long.value)


def test_an_ingested_bad_line_names_the_line_not_the_value(tmp_path: Path) -> None:
    lines = [
        {"type": "site_visited", "lead_id": "L-1", "occurred_at": "2026-03-01T10:00:00Z", "channel": "web"},
        {"type": "lead_identified", "lead_id": "L-1", "occurred_at": "2026-03-01T11:00:00Z"},
        {"type": "lead_identified", "lead_id": "L-1", "occurred_at": "2026-03-01T11:00:00Z", "phone": "12\t34-private"},
        {"type": "lead_identified", "lead_id": "L-1", "occurred_at": "2026-03-01T11:00:00Z", "email": EMAIL},
    ]  # fmt: skip
    path = tmp_path / "people.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    runner = CliRunner()
    env = {"DEALENGINE_DB": str(tmp_path / "cli.db")}
    result = runner.invoke(app, ["ingest", str(path)], env=env)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if "people.jsonl:" in line][:2]
    assert "2 interactions recorded" in result.stderr
    assert [e.split(": ", 1)[0].rsplit("/", 1)[-1] for e in errors] == [
        "people.jsonl:2",
        "people.jsonl:3",
    ]
    assert "field 'email', 'name', 'phone' or 'company': give one at least" in errors[0]
    assert "field 'phone'" in errors[1] and "private" not in result.output + result.stderr
    shown = runner.invoke(app, ["history", "L-1", "--format", "json"], env=env)
    assert [e.get("email") for e in orjson.loads(shown.stdout)] == [None, EMAIL]


# --- the lifecycle: record, read, forget, read again, record again --------------------------------


def identified(engine: Engine) -> None:
    """L-1: a visit, identified, qualified, a deal of 1,000 won. L-2: a visit, a demo request,
    identified. L-3: a visit only."""
    visited(engine, "L-1")
    engine.record("lead_identified", "L-1", "2026-03-01T10:05:00Z", email=EMAIL, name=NAME)
    engine.record("lead_qualified", "L-1", "2026-03-02T10:00:00Z", by="sdr-1")
    engine.record("deal_opened", "D-1", "2026-03-03T10:00:00Z", lead_id="L-1", amount="1000",
                  owner="ana")  # fmt: skip
    engine.record("deal_won", "D-1", "2026-03-10T10:00:00Z", amount="1000")
    visited(engine, "L-2", "2026-03-04T10:00:00Z")
    engine.record("demo_requested", "L-2", "2026-03-05T10:00:00Z")
    engine.record("lead_identified", "L-2", "2026-03-05T10:01:00Z", phone=PHONE, company="Acme")
    visited(engine, "L-3", "2026-03-06T10:00:00Z")


# By hand: three leads aware; L-2 reached intent (interest and consideration count as passed in
# the `reached` mode); L-1 reached won. lead_identified is in no step.
FUNNEL = {"awareness": 3, "interest": 2, "consideration": 2, "intent": 2, "qualified": 1,
          "opportunity": 1, "won": 1}  # fmt: skip


def figures(engine: Engine) -> tuple[dict[str, int], tuple[int, Decimal]]:
    """The funnel's leads per step and the pipeline's won deals and amount, rebuilt from the
    stream and from the materialised views (both must agree)."""
    funnel, pipeline = engine.views()
    live_funnel, _ = engine.live_funnel()
    live_pipeline, _ = engine.live_pipeline()
    assert live_funnel.steps == funnel.steps and live_pipeline.won == pipeline.won
    return {s.name: s.leads for s in funnel.steps}, (pipeline.won.deals, pipeline.won.amount)


def payloads(engine: Engine, lead: str) -> list[tuple[str, dict[str, object]]]:
    return [
        (e.event_type, {k: v for k, v in e.payload().items() if v is not None})
        for e in engine.history(lead)
    ]


def test_the_history_shows_the_values_until_forget_then_erased(engine: Engine) -> None:
    identified(engine)
    assert payloads(engine, "L-1")[1] == ("lead_identified", {"email": EMAIL, "name": NAME})
    assert figures(engine) == (FUNNEL, (1, Decimal("1000")))

    recorded = engine.forget("L-1", reason="asked by email on 2026-06-01", actor="dpo")

    forgotten = recorded.events[0]
    assert (forgotten.event_type, forgotten.actor, forgotten.originator_version) == (
        "lead_forgotten", "dpo", 5
    )  # fmt: skip
    assert forgotten.occurred_at == engine.clock()
    assert payloads(engine, "L-1") == [
        ("site_visited", {"channel": "web"}),
        ("lead_identified", {"email": ERASED, "name": ERASED}),
        ("lead_qualified", {"by": "sdr-1"}),
        ("lead_converted", {"deal_id": "D-1"}),
        ("lead_forgotten", {"reason": "asked by email on 2026-06-01"}),
    ]
    assert payloads(engine, "L-2")[2] == ("lead_identified", {"phone": PHONE, "company": "Acme"})
    assert figures(engine) == (FUNNEL, (1, Decimal("1000")))  # an erased lead still counts
    assert engine.lead("L-1").status == "converted"
    report = engine.verify()
    assert report.ok and not report.findings
    assert engine.seal().ok


def test_a_forgotten_leads_new_values_get_a_new_key(engine: Engine) -> None:
    identified(engine)
    old = sealed_values(engine, "lead:L-1")
    engine.forget("L-1", reason="request")
    engine.record("lead_identified", "L-1", "2026-07-01T10:00:00Z", email="ana.new@example.com")
    new = sealed_values(engine, "lead:L-1")[len(old) :]
    assert {key_of(v) for v in new}.isdisjoint({key_of(v) for v in old}) and len(new) == 1
    assert payloads(engine, "L-1")[-1] == ("lead_identified", {"email": "ana.new@example.com"})
    assert payloads(engine, "L-1")[1] == ("lead_identified", {"email": ERASED, "name": ERASED})
    assert engine.verify().ok


def test_forgetting_an_unknown_lead_is_refused_and_destroys_nothing(engine: Engine) -> None:
    identified(engine)
    with pytest.raises(UnknownAggregate, match="lead L-9"):
        engine.forget("L-9", reason="request")
    with pytest.raises(InvalidEvent, match="field 'lead_id'"):
        engine.forget("L 1", reason="request")
    assert payloads(engine, "L-1")[1][1]["email"] == EMAIL


def test_a_dry_run_stores_no_key(memory_engine: Engine) -> None:
    from dealengine.domain.interaction import Interaction

    visited(memory_engine, "L-1")
    cmd = Interaction("lead_identified", "L-1", "2026-03-01T11:00:00Z", {"email": EMAIL})
    assert not isinstance(memory_engine.check([cmd])[0], Exception)
    assert memory_engine.commands.lead_keys.keys_for(["L-1"], create=False) == {}


def sealed_values(engine: Engine, stream: str) -> list[str]:
    """The sealed values of a stream's events, as the store holds them."""
    return [
        value
        for e in engine.store.events(stream)
        for value in e.payload().values()
        if isinstance(value, str) and value.startswith("enc:v1:")
    ]


def key_of(sealed: str) -> str:
    return sealed.split(":")[2]


# --- nothing left behind --------------------------------------------------------------------------


def secret_forms(key: LeadKey) -> list[bytes]:
    """The forms a key's secret could take in a file or a table."""
    raw = key.secret
    return [raw, raw.hex().encode(), raw.hex().upper().encode(), base64.b64encode(raw),
            base64.urlsafe_b64encode(raw).rstrip(b"=")]  # fmt: skip


def personal_forms() -> list[bytes]:
    """The forms a value could take: as text, and as PostgreSQL shows a bytea (hex)."""
    texts = [s.encode(e) for s in (EMAIL, NAME, "ana.erasure") for e in ("utf-8", "utf-16-le")]
    return [*texts, *(t.hex().encode() for t in texts)]


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything dealengine logs, as JSON lines at debug level."""
    out = io.StringIO()
    configure("json", "debug")
    structlog.configure(logger_factory=lambda *_: structlog.PrintLogger(out))
    yield out
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_after_forget_no_sqlite_file_holds_the_values_or_the_key(
    tmp_path: Path, clock: Clock, logs: io.StringIO
) -> None:
    settings = Settings(db=str(tmp_path / "store.db"), database_url=None)
    with Engine(settings, clock=clock) as engine:
        identified(engine)
        engine.live_funnel()  # the materialised views, caught up: their file exists too
        with pytest.raises(InvalidEvent):
            engine.record("lead_identified", "L-1", "2026-03-01T11:00:00Z", email=EMAIL + "\x00")
        key = engine.commands.lead_keys.keys_for(["L-1"], create=False)["L-1"]
        before = b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir()))
        assert any(form in before for form in secret_forms(key))  # the test can see a key
        engine.forget("L-1", reason="request")
        assert payloads(engine, "L-1")[1][1]["email"] == ERASED
        engine.live_funnel()
        assert engine.verify().ok
        files = sorted(p.name for p in tmp_path.iterdir())
        assert {"store.db", "store.db-wal", "store.db.views"} <= set(files), files
        assert_nothing_left_in(tmp_path, [*personal_forms(), *secret_forms(key)])  # open
    assert_nothing_left_in(tmp_path, [*personal_forms(), *secret_forms(key)])  # closed
    written = logs.getvalue()
    assert '"event": "lead.forgotten"' in written and '"event": "view.batch"' in written
    for form in [*personal_forms(), *secret_forms(key)]:
        assert form.decode("latin-1") not in written


def assert_nothing_left_in(folder: Path, forms: list[bytes]) -> None:
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        for form in forms:
            assert form not in data, (path.name, form)


def test_after_forget_no_postgresql_table_holds_the_values_or_the_key(
    own_database_url: str, clock: Clock
) -> None:
    url, schema = own_database_url, "erasure"
    with Engine(Settings(database_url=url), clock=clock) as engine:
        identified(engine)
        engine.live_funnel()
        key = engine.commands.lead_keys.keys_for(["L-1"], create=False)["L-1"]
        assert any(form in table_text(url, schema) for form in secret_forms(key))
        engine.forget("L-1", reason="request")
        assert payloads(engine, "L-1")[1][1]["email"] == ERASED
        assert engine.verify().ok
    dumped = subprocess.run(
        ["pg_dump", "--data-only", f"--schema={schema}", url.split("?")[0]],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert b"dealengine_lead_keys" in dumped and b"LeadForgotten" in dumped
    pages = raw_pages(url, schema)
    for form in [*personal_forms(), *secret_forms(key)]:
        assert form not in dumped, form
        assert form not in table_text(url, schema), form
        assert form not in pages, form  # dead rows too: the key table was rewritten


def table_text(url: str, schema: str) -> bytes:
    """Every row of every table of the schema, as text."""
    with psycopg.connect(url.split("?")[0]) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchall()
        rows = [
            conn.execute(f'SELECT t::text FROM "{schema}"."{name}" t').fetchall()
            for (name,) in tables
        ]
    return "\n".join(r[0] for table in rows for r in table).encode()


def raw_pages(url: str, schema: str) -> bytes:
    """The raw heap pages of every table of the schema, dead rows included (pageinspect)."""
    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        found = conn.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pageinspect'"
        ).fetchone()
        where = found[0] if found else schema
        if not found:
            conn.execute(f'CREATE EXTENSION pageinspect SCHEMA "{schema}"')  # dropped with it
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchall()
        data = []
        for (name,) in tables:
            relation = f'"{schema}"."{name}"'
            blocks = conn.execute(
                "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
                (relation,),
            ).fetchone()
            for block in range(blocks[0] if blocks else 0):
                page = conn.execute(
                    f'SELECT "{where}".get_raw_page(%s, %s)', (relation, block)
                ).fetchone()
                data.append(bytes(page[0]) if page else b"")
    return b"".join(data)


def test_on_postgresql_forget_waits_for_older_transactions_to_end(
    own_database_url: str, clock: Clock
) -> None:
    """A transaction begun before the deletion may still see the deleted key, and PostgreSQL
    keeps the row while it lasts: forget waits for it (then vacuums it away), or fails
    saying so, and can be run again."""
    url, schema = own_database_url, "erasure"
    with Engine(Settings(database_url=url), clock=clock) as engine:
        identified(engine)
        key = engine.commands.lead_keys.keys_for(["L-1"], create=False)["L-1"]
        engine.commands.lead_keys.wait = 0.5  # type: ignore[attr-defined]
        with psycopg.connect(url.split("?")[0]) as reader:
            reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            reader.execute("SELECT 1").fetchone()  # its snapshot is taken
            with pytest.raises(StoreError, match="a transaction older than the deletion"):
                engine.forget("L-1", reason="request")
            assert any(form in raw_pages(url, schema) for form in secret_forms(key))
        engine.forget("L-1", reason="request, again")  # the reader has ended
        assert not any(form in raw_pages(url, schema) for form in secret_forms(key))
        assert [e for e, _ in payloads(engine, "L-1")].count("lead_forgotten") == 1
        assert engine.verify().ok


# --- the edges: ingest keys, voids, breakdowns, the CLI, what-if ------------------------------


def test_a_lines_digest_leaves_its_personal_values_out() -> None:
    import hashlib

    from dealengine.domain.lines import parse_line

    line = {"type": "lead_identified", "lead_id": "L-1", "occurred_at": "2026-03-01T11:00:00Z",
            "email": EMAIL}  # fmt: skip
    content = dict(line, email="[personal]")
    expected = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert parse_line(orjson.dumps(line), "test", "me").idempotency_key == f"sha256:{expected[:32]}"
    visit = {"type": "site_visited", "lead_id": "L-1", "occurred_at": "2026-03-01T10:00:00Z",
             "channel": "web"}  # fmt: skip
    as_before = hashlib.sha256(orjson.dumps(visit, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert (
        parse_line(orjson.dumps(visit), "test", "me").idempotency_key == f"sha256:{as_before[:32]}"
    )


def test_an_erasure_cannot_be_voided_but_an_identification_can(memory_engine: Engine) -> None:
    from dealengine import IllegalTransition

    identified(memory_engine)
    memory_engine.forget("L-2", reason="request")
    with pytest.raises(IllegalTransition, match="an erasure is not undone"):
        memory_engine.void("L-2", "v4", reason="oops")
    memory_engine.void("L-2", "v3", reason="wrong person")
    assert [e for e, _ in payloads(memory_engine, "L-2")][-1] == "event_voided"


def test_a_personal_field_is_no_breakdown(memory_engine: Engine) -> None:
    identified(memory_engine)
    with pytest.raises(Exception, match="email"):
        memory_engine.funnel(breakdowns=["email"])
    assert memory_engine.funnel(breakdowns=["campaign"]).steps[0].leads == 3


def test_the_cli_forgets_a_lead(tmp_path: Path, clock: Clock) -> None:
    env = {"DEALENGINE_DB": str(tmp_path / "cli.db")}
    with Engine(Settings(db=env["DEALENGINE_DB"], database_url=None), clock=clock) as engine:
        identified(engine)
    runner = CliRunner()
    shown = runner.invoke(app, ["history", "L-1", "--format", "csv"], env=env)
    assert f"email={EMAIL}" in shown.stdout
    forgot = runner.invoke(app, ["forget", "L-1", "--reason", "request", "--actor", "dpo"], env=env)
    assert forgot.exit_code == 0, forgot.output
    assert "recorded lead:L-1 v5: lead_forgotten" in forgot.stderr
    shown = runner.invoke(app, ["history", "L-1", "--format", "csv"], env=env)
    assert "email=[erased], name=[erased]" in shown.stdout and EMAIL not in shown.stdout
    assert ",dpo,cli,lead_forgotten,reason=request," in shown.stdout
    table = runner.invoke(app, ["history", "L-1"], env=env, terminal_width=300)
    assert "email=[erased]" in table.stdout
    unknown = runner.invoke(app, ["forget", "L-9", "--reason", "request"], env=env)
    assert unknown.exit_code == 1 and unknown.stderr.strip().count("\n") == 0
    assert "unknown lead L-9" in unknown.stderr
    assert runner.invoke(app, ["verify"], env=env).exit_code == 0


def test_a_what_if_may_hold_personal_values_and_shows_none(memory_engine: Engine) -> None:
    identified(memory_engine)
    scenario = {
        "name": "identified-demo",
        "events": [
            {"type": "demo_requested", "lead_id": "L-3", "occurred_at": "2026-03-07T10:00:00Z"},
            {"type": "lead_identified", "lead_id": "L-3", "occurred_at": "2026-03-07T10:01:00Z",
             "email": "bo.hypothetical@example.com"},
        ],
    }  # fmt: skip
    result = memory_engine.what_if(scenario)
    shown = result.model_dump_json()
    assert "bo.hypothetical" not in shown
    steps = {s.name: s.leads for s in result["identified-demo"].funnel.steps}
    assert steps["intent"] == FUNNEL["intent"] + 1  # L-3's demo request; the identification: none
    assert memory_engine.commands.lead_keys.keys_for(["L-3"], create=False) == {}


def test_the_sealing_benchmark_runs() -> None:
    """benchmarks/personal.py (its figures: benchmarks/RESULTS.md), once, on a tiny history."""
    import os
    import sys

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "personal.py"), "--leads", "20", "--rounds", "1"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root / "src")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| SQLite | ingest (JSONL, batched) | CPU |" in result.stdout


class DealContactNoted(DealEvent):
    """An event class of the kind a declared interaction makes: one personal field, on a deal."""

    event_type: ClassVar[str] = "deal_contact_noted"
    contact: Annotated[Text | None, PERSONAL] = None


def test_any_event_class_with_a_personal_field_is_sealed_with_its_leads_key(
    clock: Clock,
) -> None:
    """Sealing works from the marker, not from names: a deal's personal field is sealed with
    the key of the deal's lead, and erased with it; a deal without a lead refuses one."""
    with Engine.in_memory(clock=clock, interactions=[DealContactNoted]) as memory_engine:
        a_deals_contact_is_erased_with_its_lead(memory_engine)


def a_deals_contact_is_erased_with_its_lead(memory_engine: Engine) -> None:
    identified(memory_engine)
    memory_engine.record("deal_opened", "D-2", "2026-03-03T10:00:00Z", amount="10", owner="bo")
    memory_engine.record(
        "deal_opened", "D-3", "2026-03-06T10:00:00Z", lead_id="L-2", amount="10", owner="bo"
    )
    recorded = memory_engine.record(
        "deal_contact_noted", "D-3", "2026-03-07T10:00:00Z", contact="Ana's assistant, ext. 12"
    )
    sealed = recorded.events[0].contact  # type: ignore[attr-defined]
    assert sealed.startswith("enc:v1:") and key_of(sealed) == key_of(
        sealed_values(memory_engine, "lead:L-2")[0]
    )
    shown = {e.event_type: e.payload() for e in memory_engine.history("D-3")}
    assert shown["deal_contact_noted"] == {"contact": "Ana's assistant, ext. 12"}
    with pytest.raises(InvalidEvent, match="deal D-2 has no lead"):
        memory_engine.record("deal_contact_noted", "D-2", "2026-03-04T10:00:00Z", contact="x")
    memory_engine.forget("L-2", reason="request")
    shown = {e.event_type: e.payload() for e in memory_engine.history("D-3")}
    assert shown["deal_contact_noted"] == {"contact": ERASED}
    assert memory_engine.verify().ok


def test_writers_starting_together_share_one_key_per_lead(settings: Settings) -> None:
    """Four stores opened on one database make the keys' table and a lead's key at the same
    moment: no error, and one key for the lead they share."""
    import threading

    from dealengine.store.application import Store
    from dealengine.store.lead_keys import StoredLeadKeys

    stores = [Store(settings) for _ in range(4)]
    found: list[str] = []
    errors: list[BaseException] = []

    def first_use(store: Store, n: int) -> None:
        keys = StoredLeadKeys(store.recorder.datastore, bool(settings.database_url))
        try:
            found.append(keys.keys_for([f"L-{n}", "L-shared"])["L-shared"].id)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=first_use, args=(s, n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert errors == [] and len(found) == 4 and len(set(found)) == 1


def test_a_tenants_keys_are_its_own(settings: Settings, clock: Clock) -> None:
    """The same lead id identified in two tenants: forgetting it in one erases nothing of the
    other (each tenant's keys live in its own store)."""
    from dealengine.tenants import Tenants

    with Tenants(settings, clock=clock) as tenants:
        try:
            for name in ("acme", "beta"):
                tenants.create(name)
                visited(tenants.engine(name), "L-1")
                tenants.engine(name).record(
                    "lead_identified", "L-1", "2026-03-01T10:05:00Z", email=EMAIL
                )
            tenants.engine("acme").forget("L-1", reason="request")
            assert payloads(tenants.engine("acme"), "L-1")[1] == (
                "lead_identified", {"email": ERASED}
            )  # fmt: skip
            assert payloads(tenants.engine("beta"), "L-1")[1] == (
                "lead_identified", {"email": EMAIL}
            )  # fmt: skip
        finally:
            for name in tenants.names():
                tenants.drop(name)


def test_a_declared_personal_field_is_sealed_and_erased(tmp_path: Path, clock: Clock) -> None:
    """interactions.toml's `personal = true` builds the same marker: the field is sealed with
    the lead's key, shown while the key is kept, erased with the lead; its plain fields stay."""
    from dealengine import load_interactions

    path = tmp_path / "interactions.toml"
    path.write_text(
        '[[interactions]]\nname = "trial_started"\non = "lead"\n'
        'fields = { plan = "text", email = { type = "text", personal = true } }\n'
    )
    interactions = load_interactions(path)
    with Engine.in_memory(clock=clock, interactions=interactions) as engine:
        engine.record("trial_started", "L-1", "2026-03-01T10:00:00Z", plan="pro", email=EMAIL)
        stored = engine.store.events("lead:L-1")[0]
        assert stored.email.startswith("enc:v1:") and stored.plan == "pro"
        assert payloads(engine, "L-1") == [("trial_started", {"plan": "pro", "email": EMAIL})]
        engine.forget("L-1", reason="request")
        assert payloads(engine, "L-1")[0] == ("trial_started", {"plan": "pro", "email": ERASED})
        assert engine.verify().ok
