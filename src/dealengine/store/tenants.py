"""Where a tenant (a workspace) lives, and making, listing and dropping tenants.

A tenant has a store of its own, and with it its own views, tracking, subscriptions, keys and
seal log (they all live in the store's file or schema):
- SQLite: `<folder>/<stem>-tenants/<tenant>/<file>` beside the default store file
  `<folder>/<file>` (DEALENGINE_DB), its views file and lock files beside it;
- PostgreSQL: the schema `<base>__<tenant>` in the same database, where `<base>` is the URL's
  `?schema=` (default `dealengine`).
Its definitions folder is `<folder>/<stem>-tenants/<tenant>/definitions` (on PostgreSQL too),
used when it exists. The store without a tenant is where it always was.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import psycopg
from psycopg.sql import SQL, Identifier

from dealengine.domain.errors import DealEngineError, StoreError, UnknownTenant
from dealengine.domain.values import check_tenant
from dealengine.settings import Settings
from dealengine.store.application import Store, masked_url
from dealengine.store.errors import translated

SCHEMA_BYTES = 63  # PostgreSQL truncates longer names


def tenant_name(value: object) -> str:
    """`value` if it may name a tenant, else a DealEngineError saying why (values.py's rule)."""
    try:
        return check_tenant(value)
    except ValueError as e:
        raise DealEngineError(str(e)) from None


def located(settings: Settings) -> Settings:
    """`settings` pointing at its tenant's store (tenant None: unchanged), which must exist."""
    if settings.tenant is None:
        return settings
    name = tenant_name(settings.tenant)
    if not exists(settings, name):
        raise UnknownTenant(
            f"no tenant {name!r} in {_where(settings)}: dealengine tenants create {name}"
        )
    return _at(settings, name)


def _at(settings: Settings, name: str) -> Settings:
    if settings.database_url:
        url = _with_schema(settings.database_url, schema_of(settings.database_url, name))
        return settings.model_copy(update={"database_url": url, "tenant": None})
    if settings.db == ":memory:":  # a private in-memory store per engine already
        return settings.model_copy(update={"tenant": None})
    file = Path(settings.db).expanduser()
    return settings.model_copy(
        update={"db": str(tenants_folder(settings) / name / file.name), "tenant": None}
    )


def tenants_folder(settings: Settings) -> Path:
    """The folder that holds one folder per tenant, beside the default store file."""
    file = Path(settings.db).expanduser()
    return file.parent / f"{file.stem}-tenants"


def definitions_folder(settings: Settings) -> Path | None:
    """The tenant's own definitions folder, when it has one."""
    if settings.tenant is None:
        return None
    folder = tenants_folder(settings) / tenant_name(settings.tenant) / "definitions"
    return folder if folder.is_dir() else None


def definition_file(settings: Settings, file: str) -> Path | None:
    """The tenant's own definition `file` (funnel.toml, pipeline.toml, webhooks.toml), when
    it has one; else the shipped one is used."""
    folder = definitions_folder(settings)
    path = folder / file if folder else None
    return path if path and path.is_file() else None


def _base_schema(url: str) -> str:
    return parse_qs(urlparse(url).query).get("schema", [""])[0] or "dealengine"


def schema_of(url: str, name: str) -> str:
    """The tenant's PostgreSQL schema: `<base>__<tenant>` (one-line error when too long)."""
    schema = f"{_base_schema(url)}__{name}"
    if len(schema.encode()) > SCHEMA_BYTES:
        raise DealEngineError(
            f"tenant {name!r}: its schema {schema!r} is longer than {SCHEMA_BYTES} bytes: "
            f"use a shorter ?schema= in DEALENGINE_DATABASE_URL or a shorter name"
        )
    return schema


def _with_schema(url: str, schema: str) -> str:
    parts = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | {"schema": schema}
    return urlunparse(parts._replace(query=urlencode(query)))


def _where(settings: Settings) -> str:
    if settings.database_url:
        return masked_url(settings.database_url)
    return str(tenants_folder(settings))


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    parts = urlparse(url)
    with translated(f"connecting to PostgreSQL at {parts.hostname}:{parts.port or 5432}"):
        return psycopg.connect(
            urlunparse(parts._replace(query="")), autocommit=True, connect_timeout=10
        )


def names(settings: Settings) -> list[str]:
    """Every tenant of this store, sorted."""
    if settings.database_url:
        prefix = f"{_base_schema(settings.database_url)}__"
        with _connect(settings.database_url) as conn, translated("listing the tenants"):
            rows = conn.execute(
                "SELECT schema_name FROM information_schema.schemata"
                " WHERE starts_with(schema_name, %s)",
                (prefix,),
            ).fetchall()
        found = [str(row[0])[len(prefix) :] for row in rows]
    elif settings.db == ":memory:":
        return []
    else:
        folder = tenants_folder(settings)
        db = Path(settings.db).name
        found = [p.name for p in folder.iterdir() if (p / db).is_file()] if folder.is_dir() else []
    return sorted(n for n in found if _valid(n))


def _valid(name: str) -> bool:
    try:
        check_tenant(name)
    except ValueError:
        return False
    return True


def exists(settings: Settings, name: str) -> bool:
    if settings.database_url:
        with _connect(settings.database_url) as conn, translated(f"finding tenant {name!r}"):
            schema = schema_of(settings.database_url, name)
            row = conn.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
            ).fetchone()
        return row is not None
    if settings.db == ":memory:":
        return True
    return (tenants_folder(settings) / name / Path(settings.db).name).is_file()


def create(settings: Settings, name: str) -> Settings:
    """Make tenant `name`'s store (its schema or folder, and the store's tables); an error if
    it exists. The tenant's settings are returned."""
    name = tenant_name(name)
    if settings.db == ":memory:" and not settings.database_url:
        raise DealEngineError("an in-memory store has no tenants: use a store file")
    if exists(settings, name):
        raise DealEngineError(f"tenant {name!r} exists already in {_where(settings)}")
    if settings.database_url:
        schema = schema_of(settings.database_url, name)
        with _connect(settings.database_url) as conn, translated(f"creating tenant {name!r}"):
            conn.execute(SQL("CREATE SCHEMA {}").format(Identifier(schema)))
    else:
        (tenants_folder(settings) / name).mkdir(parents=True, exist_ok=True)  # definitions?
    at = _at(settings, name)
    Store(at).close()  # creates the store's tables
    return at


def drop(settings: Settings, name: str) -> None:
    """Delete tenant `name` and everything it holds: its events, views, subscriptions, keys
    (and, on SQLite, its folder with its definitions). The default store is not a tenant."""
    name = tenant_name(name)
    if not exists(settings, name) or (settings.db == ":memory:" and not settings.database_url):
        raise UnknownTenant(f"no tenant {name!r} in {_where(settings)}: nothing dropped")
    if settings.database_url:
        schema = schema_of(settings.database_url, name)
        with _connect(settings.database_url) as conn, translated(f"dropping tenant {name!r}"):
            conn.execute(SQL("DROP SCHEMA {} CASCADE").format(Identifier(schema)))
        return
    try:
        shutil.rmtree(tenants_folder(settings) / name)
    except OSError as e:
        raise StoreError(f"dropping tenant {name!r}", str(e)) from e


__all__ = ["create", "drop", "located", "names", "tenant_name"]
