"""The store remembers the model (issue 16, item 2): every write records the digest of the
definitions it was decided under, and the model itself once, so an auditor can read which
rules were in force for any event. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable
from pathlib import Path

import orjson
import psycopg
import pytest

from dealengine import Engine, Settings, UnknownAggregate, load_model, load_pipelines
from dealengine.audit.report import build_report
from dealengine.domain.definitions import definitions_dir
from dealengine.domain.interaction import Interaction

VISIT = ("site_visited", "2026-03-01T09:00:00Z")


def visit(engine: Engine, lead: str) -> None:
    engine.record(VISIT[0], lead, VISIT[1], channel="web")


def other_model_engine(settings: Settings) -> Engine:
    """An engine under a model other than the shipped one: its second pipeline only."""
    shipped = load_pipelines()
    only_renewals = shipped.model_copy(update={"pipelines": shipped.pipelines[1:2]})
    return Engine(settings, pipeline=only_renewals)


def test_each_write_records_the_model_it_was_decided_under(
    settings: Settings, open_engine: Callable[[], Engine]
) -> None:
    """Given writes under the shipped model, then under another, then the shipped again, the
    store holds one change row where the model changed, and each model once."""
    shipped = open_engine()
    visit(shipped, "L-1")
    visit(shipped, "L-2")
    batch = [Interaction(VISIT[0], f"L-{i}", VISIT[1], {"channel": "web"}) for i in (3, 4, 5)]
    shipped.execute_batch(batch)  # positions 3-5, one transaction
    with other_model_engine(settings) as other:
        visit(other, "L-6")  # position 6
        visit(other, "L-7")
    visit(shipped, "L-8")  # position 8: back to the shipped model
    a, b = shipped.model.digest, other.model.digest
    assert a != b
    changes = shipped.model_changes()
    assert [(c.position, c.digest) for c in changes] == [(1, a), (6, b), (8, a)]
    assert changes[0].first_used_at == changes[2].first_used_at  # the model's first use
    assert shipped.verify().ok  # nothing about the events changed


def test_the_recorded_model_is_the_rules_in_force(engine: Engine) -> None:
    """The content kept is canonical JSON whose SHA-256 is the digest, and it holds the
    stages and probabilities of the shipped pipeline.toml (read here with tomllib)."""
    visit(engine, "L-1")
    [change] = engine.model_changes()
    content = engine.recorded_model(change.digest)
    assert content is not None
    assert change.digest == "sha256:" + hashlib.sha256(content).hexdigest()
    recorded = orjson.loads(content)
    toml = tomllib.loads((definitions_dir() / "pipeline.toml").read_text())
    assert [p["name"] for p in recorded["pipelines"]["pipelines"]] == [
        p["name"] for p in toml["pipelines"]
    ]
    for mine, theirs in zip(recorded["pipelines"]["pipelines"], toml["pipelines"], strict=True):
        assert [(s["name"], s["probability"]) for s in mine["stages"]] == [
            (s["name"], s["probability"]) for s in theirs["stages"]
        ]
    funnel = tomllib.loads((definitions_dir() / "funnel.toml").read_text())
    assert [s["events"] for s in recorded["funnel"]["steps"]] == [
        s["events"] for s in funnel["steps"]
    ]
    assert engine.recorded_model("sha256:" + "0" * 64) is None


def test_a_store_written_before_models_were_recorded(settings: Settings, tmp_path: Path) -> None:
    """Given a store without the model tables (as today's release writes it), then it reads
    and verifies, reports no model, and the first write under this release records one."""
    with Engine(settings) as engine:
        engine.store.recorder.model = None  # writes as a release that records no model
        visit(engine, "L-1")
        visit(engine, "L-2")
    drop_model_tables(settings)
    with Engine(settings.model_copy(update={"read_only": True})) as reader:
        assert reader.model_changes() == []
        assert reader.verify().ok and reader.funnel().leads == 2
    with Engine(settings) as engine:
        assert engine.model_changes() == []
        visit(engine, "L-3")
        assert [(c.position, c.digest) for c in engine.model_changes()] == [
            (3, load_model().digest)
        ]
        assert engine.verify().ok


def drop_model_tables(settings: Settings) -> None:
    if settings.database_url:
        url, _, schema = settings.database_url.partition("?schema=")
        with psycopg.connect(url, autocommit=True) as conn:
            for table in ("dealengine_models", "dealengine_model_changes"):
                conn.execute(f'DROP TABLE "{schema}".{table}')
        return
    import sqlite3

    with sqlite3.connect(settings.db) as conn:
        conn.execute("DROP TABLE dealengine_models")
        conn.execute("DROP TABLE dealengine_model_changes")


def test_writers_under_one_model_add_no_row_and_a_rollback_none(
    settings: Settings, open_engine: Callable[[], Engine]
) -> None:
    """Two engines under the same model interleave: one row. A refused write (nothing
    stored) changes nothing either; a later write under another model still adds its row."""
    first, second = open_engine(), open_engine()
    for lead in ("L-1", "L-2", "L-3"):
        visit(first, lead)
        visit(second, lead + "b")
    assert [(c.position, c.digest) for c in first.model_changes()] == [(1, first.model.digest)]
    with pytest.raises(UnknownAggregate):
        first.record("lead_qualified", "L-404", VISIT[1], by="x")
    with other_model_engine(settings) as other:
        visit(other, "L-7")  # position 7
    visit(first, "L-8")  # position 8: after another's write, checked
    assert [(c.position, c.digest) for c in first.model_changes()] == [
        (1, first.model.digest), (7, other.model.digest), (8, first.model.digest),
    ]  # fmt: skip


def test_the_audit_names_the_rules_in_force_for_each_event(settings: Settings) -> None:
    """Given a deal opened by a release that recorded no model, moved under the shipped
    model, then under one whose proposal probability is 0.55, then its audit names the
    model of each run of versions."""
    shipped = load_pipelines()
    data = shipped.model_dump()
    data["pipelines"][0]["stages"][2]["probability"] = 0.55  # new_business's proposal
    changed = type(shipped).model_validate(data)
    with Engine(settings) as engine:
        engine.store.recorder.model = None
        engine.record("deal_opened", "D-1", "2026-03-01T09:00:00Z", amount="10", owner="a")
    with Engine(settings) as engine:
        engine.record("discovery_completed", "D-1", "2026-03-02T09:00:00Z")
        engine.record("proposal_sent", "D-1", "2026-03-03T09:00:00Z", amount="12")
        a = engine.model.digest
    with Engine(settings, pipeline=changed) as engine:
        engine.record("negotiation_started", "D-1", "2026-03-04T09:00:00Z")
        b = engine.model.digest
        assert a != b
        runs = build_report(engine, "D-1").rules_in_force
        assert [(r.from_version, r.to_version, r.model) for r in runs] == [
            (1, 1, None), (2, 3, a), (4, 4, b),
        ]  # fmt: skip
        content = engine.recorded_model(b)
        assert content is not None
        stages = orjson.loads(content)["pipelines"]["pipelines"][0]["stages"]
        assert stages[2] == {**stages[2], "name": "proposal", "probability": 0.55}
