"""Fixtures: a prepared store of a history (`store`, per `size` and `backend` parameter), a fresh
empty one per round (`fresh`), and the views every baseline must agree with (`expected`).

Prepared stores are opened once per session; SQLite ones come from the on-disk cache (see
harness.py), PostgreSQL ones are copied from them into a new schema, dropped at the end.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

from dealengine import Engine, Settings
from harness import LARGE, PG_URL, SEED, SIZES, SMOKE, History, Summary, history, summary

REQUIRE_PG = os.environ.get("DEALENGINE_REQUIRE_POSTGRES") == "1"


def _pg_problem() -> str | None:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except psycopg.Error as e:
        return str(e).strip().splitlines()[0]


class Schemas:
    """PostgreSQL schemas made for the benchmarks, each dropped when done with."""

    problem: str | None = None

    def create(self) -> Settings:
        if self.problem is None and (problem := _pg_problem()):
            self.problem = problem
        if self.problem:
            message = f"PostgreSQL not reachable at {PG_URL}: {self.problem}"
            if REQUIRE_PG:
                pytest.fail(message)
            pytest.skip(message)
        name = f"bench_{uuid.uuid4().hex[:10]}"
        self._run("CREATE SCHEMA {}", name)
        sep = "&" if "?" in PG_URL else "?"
        return Settings(database_url=f"{PG_URL}{sep}schema={name}")

    def drop(self, settings: Settings) -> None:
        assert settings.database_url is not None
        self._run("DROP SCHEMA {} CASCADE", settings.database_url.rpartition("schema=")[2])

    @staticmethod
    def _run(statement: LiteralString, schema: str) -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(SQL(statement).format(Identifier(schema)))


SCHEMAS = Schemas()


def pytest_benchmark_update_machine_info(machine_info: dict[str, Any]) -> None:
    """What RESULTS.md says about the run beside pytest-benchmark's own machine info."""
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            postgresql = conn.info.parameter_status("server_version") or "?"
    except psycopg.Error:
        postgresql = "not reachable"
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    machine_info["ram_gb"] = round(pages / 1024**3, 1)
    machine_info["versions"] = {
        "dealengine": version("dealengine"),
        "eventsourcing": version("eventsourcing"),
        "pydantic": version("pydantic"),
        "orjson": version("orjson"),
        "psycopg": f"{version('psycopg')} ({psycopg.pq.__impl__})",
        "duckdb": version("duckdb"),
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": postgresql,
    }
    machine_info["bench"] = {"seed": SEED, "sizes": SIZES, "large": LARGE, "smoke": SMOKE}


def copy_store(source: History, engine: Engine, chunk: int = 5000) -> None:
    """Copy the stored events of a cached SQLite store, unchanged and in order, into `engine`."""
    db = sqlite3.connect(source.store)
    rows = db.execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
    )
    while batch := rows.fetchmany(chunk):
        engine.store.app.recorder.insert_events([StoredEvent(*row) for row in batch])
    db.close()


@pytest.fixture(scope="session")
def stores() -> Iterator[Callable[[int, str], Engine]]:
    opened: dict[tuple[int, str], tuple[Engine, Settings]] = {}

    def open_store(size: int, backend: str) -> Engine:
        if (size, backend) not in opened:
            source = history(size)
            if backend == "sqlite":
                settings = Settings(db=str(source.store), database_url=None)
            else:
                settings = SCHEMAS.create()
            engine = Engine(settings)
            if backend == "pg":
                copy_store(source, engine)
            opened[size, backend] = (engine, settings)
        return opened[size, backend][0]

    yield open_store
    for engine, settings in opened.values():
        engine.close()
        if settings.database_url:
            SCHEMAS.drop(settings)


@pytest.fixture
def store(stores: Callable[[int, str], Engine], size: int, backend: str) -> Engine:
    """The prepared store of the history of `size` lines, on `backend`: only read it."""
    return stores(size, backend)


@pytest.fixture(scope="session")
def expected(stores: Callable[[int, str], Engine]) -> Callable[[int], Summary]:
    """What `engine.views()` says of the history of `size` lines."""
    known: dict[int, Summary] = {}

    def of(size: int) -> Summary:
        if size not in known:
            engine = stores(size, "sqlite")
            known[size] = summary(engine.views(), engine.pipeline_definition)
        return known[size]

    return of


@pytest.fixture
def fresh(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Engine]]:
    """`fresh()` opens a new empty store on `backend`, closing (and deleting) the one before."""
    last: list[tuple[Engine, Settings]] = []

    def close_last() -> None:
        while last:
            engine, settings = last.pop()
            engine.close()
            if settings.database_url:
                SCHEMAS.drop(settings)
            else:
                shutil.rmtree(Path(settings.db).parent)

    def make() -> Engine:
        close_last()
        if backend == "pg":
            settings = SCHEMAS.create()
        else:
            db = tmp_path_factory.mktemp("fresh") / "store.db"
            settings = Settings(db=str(db), database_url=None)
        last.append((Engine(settings), settings))
        return last[-1][0]

    yield make
    close_last()
