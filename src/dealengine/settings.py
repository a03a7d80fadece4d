"""Settings, read once at the edge from the environment (prefix DEALENGINE_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from platformdirs import user_data_path
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_db() -> Path:
    return user_data_path("dealengine", appauthor=False) / "dealengine.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEALENGINE_", extra="ignore")

    db: str = Field(default_factory=lambda: str(default_db()))
    """SQLite file (or `:memory:`); used when no database_url is set."""
    database_url: str | None = None
    """`postgresql://user:password@host:port/dbname[?schema=name]`: use PostgreSQL instead."""
    tenant: str | None = None
    """The workspace to use (its own store, views, subscriptions, keys and definitions; see
    store/tenants.py); None: the store without a tenant, as DEALENGINE_DB / _DATABASE_URL say."""
    read_only: bool = False
    """Open the store for reading only (`dealengine whatif`): no table is created, SQLite opens
    the file read-only and PostgreSQL sessions are read-only."""
    rebuild_processes: int | None = Field(default=None, ge=1)
    """Processes a pass over the whole stream (a rebuild, an as-of view, a what-if) is split
    over, by lead (Linux; a store file or PostgreSQL). Default: one per available core, up to
    4, once the store holds 50,000 events; 1: always in this process. A child is forked: it
    opens its own connection and touches none of this process's connections or threads (a
    PostgreSQL pool runs threads here)."""
    view_batch: int = Field(default=100_000, ge=1)
    """Events a materialised view reads and folds at a time when it catches up or rebuilds
    (a catch-up writes once it has folded them all, is stopped, or holds a million leads and
    deals)."""
    view_partitions: int = Field(default=1, ge=1, le=1024)
    """Partitions each materialised view's leads (and deals) are split into, each with its own
    position and one owner among the `project --follow` workers (PostgreSQL). Changing it
    needs `dealengine rebuild`."""
    lock_timeout: int = Field(default=30, ge=1)
    """Seconds a SQLite connection waits for the database's write lock (its busy timeout)
    before the operation fails with StoreError; the views' file too. Readers never wait:
    both files are in WAL mode."""
    audit_key: SecretStr | None = None
    """The secret the events' hashes and the seal log are made under (HMAC-SHA256): an attacker
    who rewrites events and recomputes the hashes is caught without it. Keep it outside the
    database; lost, the stored hashes can no longer be authenticated."""
    definitions: Path | None = None
    """The model folder (`dealengine init DIR`: pipeline.toml, funnel.toml, ...) the engine
    reads; default: the shipped definitions."""
    webhooks: str | None = None
    """webhooks.toml to read (default: the one beside funnel.toml, if any)."""
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "warning"

    def audit_key_bytes(self) -> bytes | None:
        """The audit key as the hashes use it (UTF-8), or None (unset or empty)."""
        key = self.audit_key.get_secret_value() if self.audit_key is not None else ""
        return key.encode() or None
