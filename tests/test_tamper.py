"""Tamper evidence against the real tables: a SQLite file and a PostgreSQL schema, altered with
plain SQL behind the engine's back (UPDATE a payload, DELETE a middle row, DELETE the last row,
INSERT a forged row, swap two versions, DELETE a whole stream). Each is detected and named;
an untouched store verifies clean; a seal taken before a tamper holds before it, not after."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse, urlunparse

import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from dealengine import Engine, Settings
from dealengine.audit.verify import Finding
from dealengine.cli import app
from tests.conftest import Clock

DEAL = "deal:D-1"  # 5 events: opened, discovery, proposal, amount changed, negotiation


def record_history(engine: Engine, clock: Clock) -> None:
    engine.record("ad_viewed", "L-1", "2026-03-01T09:00:00Z", channel="paid_search")
    engine.record("lead_qualified", "L-1", "2026-03-02T09:00:00Z", by="sdr-1")
    engine.record(
        "deal_opened", "D-1", "2026-03-03T09:00:00Z", lead_id="L-1", amount="1000", owner="ana"
    )
    clock.advance(hours=1)
    engine.record("discovery_completed", "D-1", "2026-03-04T09:00:00Z")
    engine.record("proposal_sent", "D-1", "2026-03-05T09:00:00Z", amount="1200")
    engine.record("deal_amount_changed", "D-1", "2026-03-06T09:00:00Z", amount="1100", reason="x")
    engine.record("negotiation_started", "D-1", "2026-03-07T09:00:00Z")
    engine.record("site_visited", "L-2", "2026-03-08T09:00:00Z", channel="organic")
    engine.record("demo_requested", "L-2", "2026-03-09T09:00:00Z")


class Table:
    """Plain SQL on the store's events table, behind the engine's back."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.database_url:
            parts = urlparse(settings.database_url)
            self.url = urlunparse(parts._replace(query=""))
            schema = parse_qs(parts.query)["schema"][0]
            self.name = f'"{schema}".dealengine_events'
        else:
            self.name = "stored_events"

    @contextmanager
    def sql(self) -> Iterator[Callable[..., list[Any]]]:
        if self.settings.database_url:
            with psycopg.connect(self.url, autocommit=False) as conn:

                def pg(statement: str, *params: Any) -> list[Any]:
                    cur = conn.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
                    return cur.fetchall() if cur.description else []

                yield pg
                conn.commit()
        else:
            conn = sqlite3.connect(self.settings.db)

            def lite(statement: str, *params: Any) -> list[Any]:
                return conn.execute(statement, params).fetchall()

            yield lite
            conn.commit()
            conn.close()

    def row(self, stream: str, version: int) -> tuple[str, bytes]:
        with self.sql() as run:
            topic, state = run(
                f"SELECT topic, state FROM {self.name} "
                "WHERE originator_id = ? AND originator_version = ?",
                stream,
                version,
            )[0]
        return topic, bytes(state)

    def set_state(self, stream: str, version: int, state: bytes) -> None:
        with self.sql() as run:
            run(
                f"UPDATE {self.name} SET state = ? WHERE originator_id = ? AND originator_version = ?",
                state,
                stream,
                version,
            )

    def delete(self, stream: str, version: int | None = None) -> None:
        where = "originator_id = ?" + ("" if version is None else " AND originator_version = ?")
        params = (stream,) if version is None else (stream, version)
        with self.sql() as run:
            run(f"DELETE FROM {self.name} WHERE {where}", *params)

    def insert(self, stream: str, version: int, topic: str, state: bytes) -> None:
        with self.sql() as run:
            run(
                f"INSERT INTO {self.name} (originator_id, originator_version, topic, state) "
                "VALUES (?, ?, ?, ?)",
                stream,
                version,
                topic,
                state,
            )

    def swap(self, stream: str, a: int, b: int) -> None:
        with self.sql() as run:
            update = f"UPDATE {self.name} SET originator_version = ? WHERE originator_id = ? AND originator_version = ?"
            run(update, -1, stream, a)
            run(update, a, stream, b)
            run(update, b, stream, -1)


@pytest.fixture
def store(settings: Settings, clock: Clock, tmp_path: Path) -> tuple[Settings, str, Path]:
    """A store with a history, its seal and the seal's manifest (taken before any tamper)."""
    manifest = tmp_path / "seal.manifest"
    with Engine(settings, clock=clock) as engine:
        record_history(engine, clock)
        report = engine.seal(manifest=manifest)
        assert report.ok, report.findings
    return settings, str(report.sealed), manifest


def verify(
    settings: Settings, seal: str | None = None, manifest: Path | None = None
) -> list[Finding]:
    with Engine(settings) as engine:
        return engine.verify(seal=seal, manifest=manifest).findings


def named(findings: list[Finding]) -> set[tuple[str, str, str]]:
    return {(f.stream, f.versions, f.kind) for f in findings}


def test_an_untouched_store_verifies_clean_alone_and_against_its_seal(
    store: tuple[Settings, str, Path], clock: Clock
) -> None:
    settings, seal, manifest = store
    assert verify(settings) == []
    assert verify(settings, seal) == []
    assert verify(settings, seal, manifest) == []
    with Engine(settings, clock=clock) as engine:  # appending after the seal is no tampering
        engine.record("deal_won", "D-1", "2026-03-20T09:00:00Z")
        engine.record("ad_viewed", "L-3", "2026-03-21T09:00:00Z", channel="social")
    assert verify(settings, seal, manifest) == []


def test_a_modified_payload_is_named(store: tuple[Settings, str, Path]) -> None:
    settings, seal, manifest = store
    table = Table(settings)
    _, state = table.row(DEAL, 3)
    table.set_state(DEAL, 3, state.replace(b'"1200"', b'"9200"'))
    assert named(verify(settings)) == {(DEAL, "v3", "modified")}
    assert (DEAL, "v3", "modified") in named(verify(settings, seal, manifest))


def test_a_middle_row_deleted_is_named(store: tuple[Settings, str, Path]) -> None:
    settings, seal, manifest = store
    Table(settings).delete(DEAL, 3)
    assert named(verify(settings)) == {(DEAL, "v3", "removed")}
    after = named(verify(settings, seal, manifest))
    assert (DEAL, "v3", "removed") in after


def test_the_last_row_deleted_is_found_only_against_the_seal(
    store: tuple[Settings, str, Path],
) -> None:
    settings, seal, manifest = store
    assert verify(settings, seal) == []  # clean against its seal before
    Table(settings).delete(DEAL, 5)
    assert verify(settings) == []  # the chain alone cannot tell
    [alone] = verify(settings, seal)
    assert alone.kind == "seal" and "10 events, the store 3 and 9" in alone.detail
    assert named(verify(settings, seal, manifest)) == {(DEAL, "v5", "removed")}


def test_a_modified_last_event_is_found_against_the_seal(
    store: tuple[Settings, str, Path],
) -> None:
    settings, seal, manifest = store
    table = Table(settings)
    _, state = table.row(DEAL, 5)
    table.set_state(DEAL, 5, state.replace(b'"api"', b'"eve"'))
    assert verify(settings) == []
    assert named(verify(settings, seal, manifest)) == {(DEAL, "v5", "modified")}


def test_a_forged_row_is_named(store: tuple[Settings, str, Path]) -> None:
    settings, seal, manifest = store
    table = Table(settings)
    topic, state = table.row(DEAL, 3)  # a proposal_sent copied as a new, sixth event
    data = orjson.loads(state)
    data["amount"] = "99999"
    table.insert(DEAL, 6, topic, orjson.dumps(data))
    [finding] = verify(settings)
    assert (finding.stream, finding.versions, finding.kind) == (DEAL, "v6", "inserted")
    assert "names v2" in finding.detail
    assert (DEAL, "v6", "inserted") in named(verify(settings, seal, manifest))
    # a forged row with no prev_hash at all
    data.pop("prev_hash")
    table.insert("lead:L-2", 3, topic, orjson.dumps(data))
    assert ("lead:L-2", "v3", "inserted") in named(verify(settings))


def test_two_versions_swapped_are_named(store: tuple[Settings, str, Path]) -> None:
    settings, seal, manifest = store
    Table(settings).swap(DEAL, 2, 3)
    assert named(verify(settings)) == {(DEAL, "v2 and v3", "reordered")}
    assert (DEAL, "v2 and v3", "reordered") in named(verify(settings, seal, manifest))


def test_a_whole_stream_deleted_is_found_against_the_seal(
    store: tuple[Settings, str, Path],
) -> None:
    settings, seal, manifest = store
    Table(settings).delete("lead:L-2")
    assert verify(settings) == []
    [alone] = verify(settings, seal)
    assert alone.kind == "seal" and "3 streams" in alone.detail and "the store 2" in alone.detail
    assert named(verify(settings, seal, manifest)) == {("lead:L-2", "", "deleted")}


def test_a_forged_manifest_is_refused(store: tuple[Settings, str, Path]) -> None:
    settings, seal, manifest = store
    text = manifest.read_text().replace("deal:D-1\t5", "deal:D-1\t4")
    manifest.write_text(text)
    with pytest.raises(Exception, match="does not match the seal"):
        verify(settings, seal, manifest)


def test_cli_verify_exits_non_zero_on_any_finding(
    store: tuple[Settings, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, seal, manifest = store
    if settings.database_url:
        monkeypatch.setenv("DEALENGINE_DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
        monkeypatch.setenv("DEALENGINE_DB", settings.db)
    cli = CliRunner()
    clean = cli.invoke(app, ["verify", "--seal", seal, "--manifest", str(manifest)])
    assert clean.exit_code == 0, clean.output
    assert "verified 10 events in 3 streams" in clean.stderr and "intact" in clean.stderr
    printed = cli.invoke(app, ["seal"])
    assert printed.exit_code == 0 and printed.stdout.strip() == seal  # nothing changed since
    Table(settings).delete(DEAL, 5)
    found = cli.invoke(app, ["verify", "--seal", seal, "--manifest", str(manifest)])
    assert found.exit_code == 1
    assert "deal:D-1 v5: removed: missing from the end" in found.stdout
    as_json = cli.invoke(app, ["verify", "--seal", seal, "--format", "json"])
    assert as_json.exit_code == 1 and orjson.loads(as_json.stdout)["ok"] is False
    bad = cli.invoke(app, ["verify", "--seal", "nonsense"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: not a seal")
