"""Fixtures: one store suite, run against SQLite and PostgreSQL through the `store_url` parameter.

PostgreSQL tests use DEALENGINE_TEST_DATABASE_URL (default: postgresql://postgres@127.0.0.1:5432/test).
Without a server they skip, saying how to enable them; with DEALENGINE_REQUIRE_POSTGRES=1 (set by
.ci/run) they fail instead, so on CI every test runs.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from dealengine import Engine, Settings

PG_URL = os.environ.get("DEALENGINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("DEALENGINE_REQUIRE_POSTGRES") == "1"


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except psycopg.Error as e:
        return str(e).strip().splitlines()[0]


_PG_PROBLEM = _pg_available()


def need_postgres() -> None:
    if _PG_PROBLEM is None:
        return
    message = (
        f"PostgreSQL not reachable at {PG_URL} ({_PG_PROBLEM}); start it, or point "
        "DEALENGINE_TEST_DATABASE_URL at one, to run these tests"
    )
    if REQUIRE_PG:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A database URL whose PostgreSQL schema is new and dropped afterwards."""
    need_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}schema={schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for a fresh store: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return Settings(db=str(tmp_path / "store.db"), database_url=None)
    return Settings(database_url=request.getfixturevalue("pg_schema_url"))


class Clock:
    """A controllable clock for recorded_at: starts at a fixed time, moves when told."""

    def __init__(self, start: datetime = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def open_engine(settings: Settings, clock: Clock) -> Iterator[Callable[[], Engine]]:
    """Opens engines on the same store (several may be open at once); closes them after."""
    engines: list[Engine] = []

    def make() -> Engine:
        engines.append(Engine(settings, clock=clock))
        return engines[-1]

    yield make
    for e in engines:
        e.close()


@pytest.fixture
def engine(open_engine: Callable[[], Engine]) -> Engine:
    return open_engine()


@pytest.fixture
def memory_engine(clock: Clock) -> Iterator[Engine]:
    with Engine.in_memory(clock=clock) as e:
        yield e
