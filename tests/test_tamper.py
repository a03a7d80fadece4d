"""Tamper evidence against the real tables: a SQLite file and a PostgreSQL schema, altered with
plain SQL behind the engine's back (UPDATE a payload or a time, the last event's too, DELETE a
middle row, DELETE the last row, INSERT a forged row, in the middle or at the end, swap two
versions, in a stream of more than 64 events too, DELETE a whole stream, rewrite an event and
recompute every hash after it, with and without the audit key). Each is detected and named,
or, where a mode cannot see it, shown not to be (the limits docs/audit.md lists); an
untouched store verifies clean; a seal taken before a tamper holds before it, not after; the
seal log's own chain shows its entries altered or removed; a store written before own hashes
still verifies, and says how many events it could check by the chain only."""

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
from pydantic import SecretStr
from typer.testing import CliRunner

from dealengine import Engine, Settings
from dealengine.audit.verify import Finding, VerifyReport
from dealengine.cli import app
from dealengine.domain.chain import event_hash, split_own_hash, with_own_hash
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
            self.seals = f'"{schema}".dealengine_seals'
        else:
            self.name = "stored_events"
            self.seals = "dealengine_seals"

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

    def rows(self, stream: str) -> list[tuple[int, str, bytes]]:
        with self.sql() as run:
            found = run(
                f"SELECT originator_version, topic, state FROM {self.name} "
                "WHERE originator_id = ? ORDER BY originator_version",
                stream,
            )
        return [(v, topic, bytes(state)) for v, topic, state in found]

    def shift(self, stream: str, from_version: int, by: int = 1) -> None:
        """Move the events from `from_version` on `by` versions (one by one, in the order that
        keeps the keys unique)."""
        versions = [v for v, _, _ in self.rows(stream) if v >= from_version]
        with self.sql() as run:
            for v in reversed(versions) if by > 0 else versions:
                run(
                    f"UPDATE {self.name} SET originator_version = ? "
                    "WHERE originator_id = ? AND originator_version = ?",
                    v + by,
                    stream,
                    v,
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


def report(settings: Settings, **options: Any) -> VerifyReport:
    with Engine(settings) as engine:
        return engine.verify(**options)


def keyed(settings: Settings, key: str | None) -> Settings:
    return settings.model_copy(update={"audit_key": SecretStr(key) if key else None})


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


def test_a_payload_set_to_null_is_named(store: tuple[Settings, str, Path]) -> None:
    settings, _, _ = store
    table = Table(settings)
    with table.sql() as run:
        run(
            f"UPDATE {table.name} SET state = NULL WHERE originator_id = ? AND originator_version = 3",
            DEAL,
        )
    assert named(verify(settings)) == {(DEAL, "v3", "modified")}


def test_a_middle_row_deleted_is_named(store: tuple[Settings, str, Path]) -> None:
    settings, seal, manifest = store
    table = Table(settings)
    table.delete(DEAL, 3)
    assert named(verify(settings)) == {(DEAL, "v3", "removed")}
    after = named(verify(settings, seal, manifest))
    assert (DEAL, "v3", "removed") in after
    table.shift(DEAL, 4, by=-1)  # the gap closed: v4 and v5 moved down
    [finding] = verify(settings)
    assert (finding.stream, finding.versions, finding.kind) == (DEAL, "v3", "removed")
    assert "v3 was recorded as v4" in finding.detail


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


def test_the_last_event_changed_is_named_without_a_seal(
    store: tuple[Settings, str, Path], clock: Clock
) -> None:
    """Its own hash: a deal's latest proposal_sent amount 1200 -> 9200, a last event's times."""
    settings, seal, manifest = store
    with Engine(settings, clock=clock) as engine:
        engine.record("deal_opened", "D-2", "2026-03-10T09:00:00Z", amount="1000", owner="ana")
        engine.record("proposal_sent", "D-2", "2026-03-11T09:00:00Z", amount="1200")
    table = Table(settings)
    _, state = table.row("deal:D-2", 2)
    table.set_state("deal:D-2", 2, state.replace(b'"1200"', b'"9200"'))
    _, state = table.row(DEAL, 5)
    table.set_state(DEAL, 5, state.replace(b"2026-03-07T09", b"2026-03-17T09"))  # occurred_at
    _, state = table.row("lead:L-2", 2)
    recorded = state.replace(b'"recorded_at":"2026-06', b'"recorded_at":"2026-05')
    assert recorded != state
    table.set_state("lead:L-2", 2, recorded)
    changed = {
        ("deal:D-2", "v2", "modified"),
        (DEAL, "v5", "modified"),
        ("lead:L-2", "v2", "modified"),
    }
    assert named(verify(settings)) == changed
    assert changed - {("deal:D-2", "v2", "modified")} <= named(verify(settings, seal, manifest))


def test_a_middle_insert_is_named_as_an_insert(store: tuple[Settings, str, Path]) -> None:
    """A forged event put in at v3 (the real v3..v5 moved up to make room), well formed: it
    follows v2 and its own hash fits it (recomputed without the key). v3..v5 are not named."""
    settings, _, _ = store
    table = Table(settings)
    topic, state = table.row(DEAL, 3)
    body, _ = split_own_hash(state)
    forged = body.replace(b'"1200"', b'"99999"')
    table.shift(DEAL, 3)
    table.insert(DEAL, 3, topic, with_own_hash(forged, event_hash(DEAL, 3, topic, forged)))
    [finding] = verify(settings)
    assert (finding.stream, finding.versions, finding.kind) == (DEAL, "v3", "inserted")
    assert "names v2, which another event follows" in finding.detail


def test_a_swap_in_a_long_stream_is_named_as_a_reorder(settings: Settings, clock: Clock) -> None:
    """Far beyond the old 64-event search: 80 events, v10 and v50 exchanged; then in a stream
    stored before own hashes (the chain alone), v20 and v21."""
    with Engine(settings, clock=clock) as engine:
        for day in range(80):
            engine.record(
                "ad_viewed", "L-9", f"2026-01-01T00:{day // 60:02}:{day % 60:02}Z", channel="x"
            )
    table = Table(settings)
    table.swap("lead:L-9", 10, 50)
    [finding] = verify(settings)
    assert (finding.stream, finding.versions, finding.kind) == (
        "lead:L-9",
        "v10 and v50",
        "reordered",
    )
    table.swap("lead:L-9", 10, 50)
    assert verify(settings) == []
    strip_own_hashes(table, "lead:L-9")
    table.swap("lead:L-9", 20, 21)
    assert named(verify(settings)) == {("lead:L-9", "v20 and v21", "reordered")}


def rewrite_from(
    table: Table, stream: str, version: int, change: Callable[[bytes], bytes], key: bytes | None
) -> None:
    """The attacker with access to the database: change one event, then recompute its own hash
    and every hash after it in the stream (with the rule of domain/chain.py, under `key`)."""
    prev: str | None = None
    for v, topic, state in table.rows(stream):
        body, own = split_own_hash(state)
        assert own is not None
        if v >= version:
            data = orjson.loads(change(body) if v == version else body)
            data["prev_hash"] = prev
            body = orjson.dumps(data)
            own = event_hash(stream, v, topic, body, key)
            table.set_state(stream, v, with_own_hash(body, own))
        prev = own


def test_a_recomputed_chain_is_caught_only_with_the_key(settings: Settings, clock: Clock) -> None:
    """Without a key, whoever can write to the database can rewrite an event and recompute every
    hash after it: nothing shows it (the limit; a seal kept outside does). With the key, the
    same rewrite is caught whichever hashes the attacker writes."""

    def amount(body: bytes) -> bytes:
        return body.replace(b'"1200"', b'"9200"')

    for key in (None, "the-audit-key"):
        store = keyed(settings, key)
        with Engine(store, clock=clock) as engine:
            record_history(engine, clock)
        table = Table(store)
        rewrite_from(table, DEAL, 3, amount, None)  # the attacker has no key
        if key is None:
            assert verify(store) == []  # not caught: the documented limit
        else:
            found = named(verify(store))
            assert {(DEAL, f"v{v}", "modified") for v in (3, 4, 5)} <= found
            rewrite_from(table, DEAL, 3, amount, b"a-guessed-key")  # keyed form, wrong key
            assert named(verify(store)) == {(DEAL, f"v{v}", "modified") for v in (3, 4, 5)}
        table.delete(DEAL)
        table.delete("lead:L-1")
        table.delete("lead:L-2")


def test_without_the_key_a_keyed_store_is_not_called_authentic(
    settings: Settings, clock: Clock
) -> None:
    store = keyed(settings, "the-audit-key")
    with Engine(store, clock=clock) as engine:
        record_history(engine, clock)
    good = report(store)
    assert good.ok and good.authenticated and good.notes() == []
    blind = report(settings)  # the same store, verified without the key
    assert blind.ok and not blind.authenticated and blind.unchecked == 10
    assert "NOT checked" in blind.notes()[0]
    wrong = report(keyed(settings, "another-key"))
    assert wrong.findings[0].kind == "key" and len(wrong.findings) == 11
    table = Table(store)
    _, state = table.row(DEAL, 5)
    table.set_state(DEAL, 5, state.replace(b'"api"', b'"eve"'))
    assert named(verify(store)) == {(DEAL, "v5", "modified")}


def strip_own_hashes(table: Table, stream: str) -> None:
    for v, _, state in table.rows(stream):
        table.set_state(stream, v, split_own_hash(state)[0])


def test_an_old_store_still_verifies_and_says_what_it_could_not_check(
    store: tuple[Settings, str, Path],
) -> None:
    """Events written before own hashes (the field stripped with SQL) are checked by the chain;
    the report counts them. Stripping one event's hash after others that have one is a finding."""
    settings, seal, manifest = store
    table = Table(settings)
    for stream in (DEAL, "lead:L-1", "lead:L-2"):
        strip_own_hashes(table, stream)
    old = report(settings, seal=seal, manifest=manifest)
    assert old.ok and old.without_own == 10 and "10 events were stored without" in old.notes()[0]
    _, state = table.row(DEAL, 3)
    table.set_state(DEAL, 3, state.replace(b'"1200"', b'"9200"'))
    assert named(verify(settings)) == {(DEAL, "v3", "modified")}


def test_an_own_hash_removed_from_a_changed_last_event_is_named(
    store: tuple[Settings, str, Path],
) -> None:
    settings, _, _ = store
    table = Table(settings)
    _, state = table.row(DEAL, 5)
    table.set_state(DEAL, 5, split_own_hash(state)[0].replace(b'"api"', b'"eve"'))
    [finding] = verify(settings)
    assert (finding.stream, finding.versions, finding.kind) == (DEAL, "v5", "modified")
    assert "own hash has been removed" in finding.detail


def test_the_seal_log_is_a_chain_checked_against_the_store(
    store: tuple[Settings, str, Path], clock: Clock
) -> None:
    """Three seals (the fixture's, then two after appends): all hold; an entry altered, an
    entry removed from the middle, the store altered after a seal: each named."""
    settings, first, _ = store
    seals = [first]
    for day in (20, 21):
        with Engine(settings, clock=clock) as engine:
            engine.record("ad_viewed", "L-3", f"2026-03-{day}T09:00:00Z", channel="social")
            seals.append(str(engine.seal().sealed))
    last = seals[-1]
    clean = report(settings, seals=True, seal=last)
    assert clean.ok and clean.seals == 3
    table = Table(settings)
    Table(settings).delete("lead:L-3", 2)  # the last event: removed after seal #3
    found = report(settings, seals=True).findings
    assert [(f.stream, f.kind) for f in found] == [("store", "seal")]
    assert "seal #3 of the log" in found[0].detail
    with table.sql() as run:
        run(f"UPDATE {table.seals} SET sealed_at = ? WHERE number = 1", "2026-01-01T00:00:00Z")
        run(f"DELETE FROM {table.seals} WHERE number = 2")
    found = report(settings, seals=True, seal=seals[1]).findings
    assert named(found) >= {("seal log", "#1", "modified"), ("seal log", "#2", "removed")}
    assert ("seal log", "", "removed") in named(found)  # the seal kept outside is gone


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
    assert "seal #2 appended to the seal log" in printed.stderr
    logged = cli.invoke(app, ["verify", "--seals"])
    assert logged.exit_code == 0 and "the seal log's 2 seals: intact" in logged.stderr
    Table(settings).delete(DEAL, 5)
    found = cli.invoke(app, ["verify", "--seal", seal, "--manifest", str(manifest)])
    assert found.exit_code == 1
    assert "deal:D-1 v5: removed: missing from the end" in found.stdout
    logged = cli.invoke(app, ["verify", "--seals"])
    assert logged.exit_code == 1 and "seal #1 of the log does not match" in logged.stdout
    as_json = cli.invoke(app, ["verify", "--seal", seal, "--format", "json"])
    assert as_json.exit_code == 1 and orjson.loads(as_json.stdout)["ok"] is False
    bad = cli.invoke(app, ["verify", "--seal", "nonsense"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: not a seal")
