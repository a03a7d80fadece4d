"""Tenants (issue 20, item 1): workspaces in one deployment, each with its own store.

Given the same lead and deal ids recorded with different events in two tenants and in the
store without a tenant, every read of one (states, histories, views, live views, what-ifs,
verify, seal, the audit report, the HTML report, subscribers, keys) shows its own numbers,
computed here by hand, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dealengine import DealEngineError, Engine, Settings, UnknownTenant
from dealengine.audit.report import build_report
from dealengine.domain.events import parse_moment
from dealengine.domain.values import TENANT_MAX, check_tenant
from dealengine.report import render_report
from dealengine.store.recorders import notify_channel
from dealengine.store.tenants import schema_of
from dealengine.tenants import Tenants

from .conftest import PG_URL

AT = "2026-03-{:02d}T10:00:00Z"
# Tenant acme: one lead, its deal D-1 at proposal for 1,000.
ACME = [
    ("ad_viewed", "L-1", 1, {"channel": "paid_search", "campaign": "spring"}),
    ("demo_requested", "L-1", 2, {}),
    ("lead_qualified", "L-1", 3, {"by": "sdr-1"}),
    ("deal_opened", "D-1", 4, {"lead_id": "L-1", "amount": "1000", "owner": "ana"}),
    ("proposal_sent", "D-1", 5, {}),
]
# Tenant beta: the same ids, other events: D-1 won at 2,500; L-2's deal D-2 open for 4,000.
BETA = [
    ("site_visited", "L-1", 1, {"channel": "organic_search", "page": "/"}),
    ("deal_opened", "D-1", 2, {"lead_id": "L-1", "amount": "3000", "owner": "bo"}),
    ("deal_won", "D-1", 3, {"amount": "2500"}),
    ("site_visited", "L-2", 4, {"channel": "referral", "page": "/pricing"}),
    ("deal_opened", "D-2", 5, {"lead_id": "L-2", "amount": "4000", "owner": "bo"}),
]
# The store without a tenant: L-1 saw an ad, nothing more.
DEFAULT = [("ad_viewed", "L-1", 9, {"channel": "display", "campaign": "fall"})]

# By hand. Funnel, "reached" mode (a step reached counts every step before it): awareness,
# interest, consideration, intent, qualified, opportunity, won.
STEPS = {
    "acme": [1, 1, 1, 1, 1, 1, 0],  # L-1 reached opportunity (D-1 opened)
    "beta": [2, 2, 2, 2, 2, 2, 1],  # L-1 won (D-1), L-2 reached opportunity (D-2)
    None: [1, 0, 0, 0, 0, 0, 0],
}
# Pipeline new_business: open stages with deals (deals, amount, weighted), won (deals, amount).
OPEN = {
    "acme": {"proposal": (1, Decimal(1000), Decimal(500))},  # 1,000 x 0.5
    "beta": {"prospecting": (1, Decimal(4000), Decimal(400))},  # 4,000 x 0.1
    None: {},
}
WON = {"acme": (0, Decimal(0)), "beta": (1, Decimal(2500)), None: (0, Decimal(0))}
# Opening a deal also records lead_converted on its lead: acme L-1 4 events, D-1 2; beta L-1
# 2, D-1 2, L-2 2, D-2 1.
EVENTS = {"acme": 6, "beta": 7, None: 1}
STREAMS = {"acme": 2, "beta": 4, None: 1}
EVENT_TYPES = sorted({t for t, *_ in ACME + BETA + DEFAULT})
D1_STAGE = {"acme": "proposal", "beta": "closed_won"}


@pytest.fixture
def tenants(settings: Settings) -> Iterator[Tenants]:
    """The store `settings` names with tenants acme and beta, each with its history."""
    with Tenants(settings) as found:
        try:
            for name, history in (("acme", ACME), ("beta", BETA), (None, DEFAULT)):
                if name is not None:
                    found.create(name)
                for event_type, target, day, fields in history:
                    found.engine(name).record(event_type, target, AT.format(day), **fields)
            yield found
        finally:
            for name in found.names():  # PostgreSQL: tenants are schemas of their own
                found.drop(name)


def steps(funnel: Any) -> list[int]:
    return [s.leads for s in funnel.steps]


def open_stages(pipeline: Any) -> dict[str, tuple[int, Decimal, Decimal]]:
    return {
        s.name: (s.open_deals, s.amount, s.weighted_amount) for s in pipeline.stages if s.open_deals
    }


def won(pipeline: Any) -> tuple[int, Decimal]:
    return pipeline.won.deals, pipeline.won.amount


@pytest.mark.parametrize("name", ["acme", "beta", None])
def test_every_read_of_a_tenant_shows_its_own_rows(tenants: Tenants, name: str | None) -> None:
    engine = tenants.engine(name)
    assert engine.tenant == name
    funnel, pipeline = engine.views()
    assert steps(funnel) == STEPS[name]
    assert open_stages(pipeline) == OPEN[name] and won(pipeline) == WON[name]
    live_funnel, lag = engine.live_funnel()
    live_pipeline, _ = engine.live_pipeline()
    assert steps(live_funnel) == STEPS[name] and lag.position == EVENTS[name]
    assert open_stages(live_pipeline) == OPEN[name] and won(live_pipeline) == WON[name]
    as_of = engine.funnel(as_of=parse_moment("2026-03-01T23:59:59Z"))
    assert steps(as_of) == ([1, 0, 0, 0, 0, 0, 0] if name else [0] * 7)  # day 1 only
    what_if = engine.what_if({"name": "same"})
    assert steps(what_if.baseline.funnel) == STEPS[name] == steps(what_if["same"].funnel)
    assert open_stages(what_if["same"].pipeline) == OPEN[name]
    assert len(list(engine.events())) == EVENTS[name]
    report = engine.verify()
    assert report.ok and (report.events, report.streams) == (EVENTS[name], STREAMS[name])
    sealed = engine.seal()
    assert sealed.seals == 1  # each tenant's own seal log: its first seal
    assert engine.verify(seal=str(sealed.sealed)).ok
    lead = engine.lead("L-1")
    assert len(engine.history("L-1")) == {"acme": 4, "beta": 2, None: 1}[name]
    if name is None:
        assert lead.deal_id is None
        with pytest.raises(DealEngineError):
            engine.deal("D-1")
        return
    deal = engine.deal("D-1")
    assert deal.stage == D1_STAGE[name] and deal.amount == {"acme": 1000, "beta": 2500}[name]
    audit = build_report(engine, "D-1")
    assert [e["type"] for e in audit.timeline] == {
        "acme": ["deal_opened", "proposal_sent"],
        "beta": ["deal_opened", "deal_won"],
    }[name]
    assert audit.integrity.intact


def test_a_seal_of_one_tenant_does_not_match_another(tenants: Tenants) -> None:
    acme, beta = tenants.engine("acme"), tenants.engine("beta")
    sealed = str(acme.seal().sealed)
    assert acme.verify(seal=sealed).ok
    assert not beta.verify(seal=sealed).ok  # beta's streams are not acme's


def test_the_html_report_of_a_tenant_holds_its_numbers(tenants: Tenants) -> None:
    acme = render_report(tenants.engine("acme"))
    beta = render_report(tenants.engine("beta"))
    assert "2,500" in beta and "2,500" not in acme  # beta's won amount
    assert "4,000" in beta and "4,000" not in acme  # beta's open deal D-2


def test_subscribers_and_keys_are_the_tenants_own(tenants: Tenants) -> None:
    seen: dict[str, list[str]] = {"acme": [], "beta": []}
    for name, events in seen.items():
        engine = tenants.engine(name)
        engine.subscribe(
            "crm", lambda n, events=events: events.append(n.type), types=EVENT_TYPES, run=False
        )
        engine.subscriptions.catch_up("crm")
    assert seen["acme"] == [t for t, *_ in ACME] and seen["beta"] == [t for t, *_ in BETA]
    _, key = tenants.engine("acme").keys.create("app", "read")
    assert tenants.engine("acme").keys.check(key) is not None
    assert tenants.engine("beta").keys.check(key) is None
    assert tenants.engine(None).keys.check(key) is None
    assert tenants.engine("beta").keys.all() == []


def test_tenants_are_listed_created_once_and_dropped(tenants: Tenants) -> None:
    assert tenants.names() == ["acme", "beta"]
    with pytest.raises(DealEngineError, match="tenant 'acme' exists already"):
        tenants.create("acme")
    tenants.drop("beta")
    assert tenants.names() == ["acme"]
    with pytest.raises(UnknownTenant, match="no tenant 'beta'"):
        tenants.engine("beta")
    with pytest.raises(UnknownTenant, match=r"no tenant 'beta'.*nothing dropped"):
        tenants.drop("beta")
    with pytest.raises(DealEngineError, match="'default' is the store without a tenant"):
        tenants.drop("default")
    tenants.create("beta")  # again: a new, empty workspace
    assert steps(tenants.engine("beta").views()[0]) == [0] * 7
    assert steps(tenants.engine("acme").views()[0]) == STEPS["acme"]


def test_engine_tenant_and_settings_tenant_are_the_same(settings: Settings) -> None:
    with Tenants(settings) as tenants:
        tenants.create("acme")
        try:
            with Engine(settings, tenant="acme") as a:
                a.record(*ACME[0][:2], AT.format(1), **ACME[0][3])
            with Engine(settings.model_copy(update={"tenant": "acme"})) as b:
                assert b.tenant == "acme" and b.store.count() == 1
            with Engine(settings) as default:
                assert default.tenant is None and default.store.count() == 0
        finally:
            tenants.drop("acme")


@pytest.mark.parametrize(
    "name",
    ["", "Acme", "1acme", "_acme", "acme_", "ac__me", "ac-me", "ac me", "acmé", "a" * 41,
     "default", "acme;drop", "../acme", None, 7],
)  # fmt: skip
def test_a_tenant_name_outside_the_rule_is_refused(name: Any) -> None:
    with pytest.raises(ValueError, match=r"^tenant name .*: ") as refused:
        check_tenant(name)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("name", ["a", "acme", "acme_2", "a1_b2_c3", "a" * TENANT_MAX])
def test_a_tenant_name_inside_the_rule_is_kept(name: str) -> None:
    assert check_tenant(name) == name


def test_an_engine_on_a_bad_or_unknown_tenant_is_one_line(tmp_path: Path) -> None:
    settings = Settings(db=str(tmp_path / "s.db"), database_url=None)
    with pytest.raises(DealEngineError, match=r"^tenant name 'Acme': a lowercase letter"):
        Engine(settings, tenant="Acme")
    with pytest.raises(UnknownTenant, match=r"^no tenant 'acme' in .*: dealengine tenants create"):
        Engine(settings, tenant="acme")
    assert not (tmp_path / "s-tenants").exists()  # nothing made by a typo


def test_on_sqlite_a_tenant_is_a_folder_beside_the_store(tmp_path: Path) -> None:
    settings = Settings(db=str(tmp_path / "s.db"), database_url=None)
    with Tenants(settings) as tenants:
        tenants.create("acme")
        tenants.engine("acme").record(*ACME[0][:2], AT.format(1), **ACME[0][3])
        tenants.engine("acme").live_funnel()
    folder = tmp_path / "s-tenants" / "acme"
    assert (folder / "s.db").is_file() and (folder / "s.db.views").is_file()
    assert not (tmp_path / "s.db").exists()  # the default store is untouched


def test_on_postgres_a_tenant_is_a_schema_beside_the_store(pg_schema_url: str) -> None:
    settings = Settings(database_url=pg_schema_url)
    base = pg_schema_url.rpartition("schema=")[2]
    with Tenants(settings) as tenants:
        tenants.create("acme")
        try:
            tenants.engine("acme").record(*ACME[0][:2], AT.format(1), **ACME[0][3])
            tenants.engine("acme").live_funnel()
            with psycopg.connect(PG_URL) as conn:
                tables = {
                    (str(s), str(t))
                    for s, t in conn.execute(
                        "SELECT table_schema, table_name FROM information_schema.tables"
                        " WHERE table_schema IN (%s, %s)",
                        (base, f"{base}__acme"),
                    )
                }
            assert (f"{base}__acme", "dealengine_events") in tables
            assert (base, "dealengine_events") not in tables  # the default store: not opened
        finally:
            tenants.drop("acme")


def test_a_schema_name_too_long_for_postgres_is_refused() -> None:
    url = f"postgresql://u@h/db?schema={'s' * 30}"
    assert schema_of(url, "a" * 31) == f"{'s' * 30}__{'a' * 31}"  # 63 bytes
    with pytest.raises(DealEngineError, match="longer than 63 bytes"):
        schema_of(url, "a" * 32)
    assert schema_of("postgresql://u@h/db", "acme") == "dealengine__acme"


def test_passes_split_over_processes_read_the_tenants_store(settings: Settings) -> None:
    """Given views and a what-if folded by forked children (each opening the store itself),
    they read the tenant's store, not the default one."""
    split = settings.model_copy(update={"rebuild_processes": 2})
    with Tenants(split) as tenants:
        tenants.create("acme")
        try:
            for event_type, target, day, fields in ACME:
                tenants.engine("acme").record(event_type, target, AT.format(day), **fields)
            engine = tenants.engine("acme")
            assert engine.passes.split(engine.store.position()) == 2
            funnel, pipeline = engine.views()
            assert steps(funnel) == STEPS["acme"] and open_stages(pipeline) == OPEN["acme"]
            assert steps(engine.what_if({"name": "same"})["same"].funnel) == STEPS["acme"]
        finally:
            tenants.drop("acme")


def test_a_tenants_writes_notify_its_own_channel_only(pg_schema_url: str) -> None:
    """Given workers listening for acme's and beta's writes, when acme records, only acme's
    channel is notified (the channel was one per database before: every worker woke)."""
    with Tenants(Settings(database_url=pg_schema_url)) as tenants:
        tenants.create("acme")
        tenants.create("beta")
        try:
            acme, beta = tenants.engine("acme"), tenants.engine("beta")
            channels = {acme.store.recorder.channel_name, beta.store.recorder.channel_name}
            assert len(channels) == 2
            with psycopg.connect(PG_URL, autocommit=True) as listener:
                for channel in channels:
                    listener.execute(f'LISTEN "{channel}"')
                acme.record(*ACME[0][:2], AT.format(1), **ACME[0][3])
                heard = {note.channel for note in listener.notifies(timeout=2, stop_after=5)}
            assert heard == {acme.store.recorder.channel_name}
        finally:
            tenants.drop("acme")
            tenants.drop("beta")


def test_the_channel_of_the_public_schema_is_unchanged() -> None:
    assert notify_channel("public", "dealengine_events") == "dealengine_events"
    assert notify_channel("t_1__acme", "dealengine_events") == "t_1__acme_dealengine_events"
    long_a, long_b = "a" * 50 + "__x", "a" * 50 + "__y"
    assert len({notify_channel(long_a, "e"), notify_channel(long_b, "e")}) == 2
    assert all(len(notify_channel(s, "dealengine_events")) <= 63 for s in (long_a, long_b))


def test_the_engine_factory_gives_each_thread_the_same_engine(tenants: Tenants) -> None:
    """Given 8 threads asking for acme's and beta's engines at once, each tenant gets one
    engine, shared, and each thread's write lands in its tenant."""
    found: list[tuple[str, Engine]] = []
    start = threading.Barrier(8)

    def ask(n: int) -> None:
        name = ("acme", "beta")[n % 2]
        start.wait()
        engine = tenants.engine(name)
        engine.record("site_visited", f"T-{n}", AT.format(20), channel="threads")
        found.append((name, engine))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(e) for name, e in found if name == "acme"}) == 1
    assert len({id(e) for name, e in found if name == "beta"}) == 1
    for name in ("acme", "beta"):  # 4 new leads each, on top of the history
        assert steps(tenants.engine(name).views()[0])[0] == STEPS[name][0] + 4
    assert steps(tenants.engine(None).views()[0]) == STEPS[None]
