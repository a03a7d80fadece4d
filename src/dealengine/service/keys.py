"""API keys for the HTTP API: made once and shown once; the store keeps only their SHA-256.

A key reads `dek_<id>_<secret>`, and a tenant's `dek_<id>_<secret>.<tenant>`: a server of many
tenants checks it in that tenant's store only (`tenant_of`); its id names it in lists and
logs. Scopes: `read` (states,
histories, views, what-ifs, the event stream), `write` (read, and recording interactions),
`audit` (read, and verify and audit reports), `admin` (all of them).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from dealengine.domain.errors import DealEngineError
from dealengine.store.own_tables import OwnTables

Scope = Literal["read", "write", "audit", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
GRANTS: dict[Scope, frozenset[Scope]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "audit": frozenset({"read", "audit"}),
    "admin": frozenset(SCOPES),
}
TABLE = (
    "CREATE TABLE IF NOT EXISTS {p}dealengine_api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, "
    "scope TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, revoked_at TEXT)"
)


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    scope: Scope
    created_at: str
    revoked_at: str | None = None

    def allows(self, needed: Scope) -> bool:
        return self.revoked_at is None and needed in GRANTS[self.scope]


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def tenant_of(key: str) -> str | None:
    """The tenant a key names (after its last `.`), or None: the store without a tenant."""
    _, dot, tenant = key.rpartition(".")
    return tenant if dot and tenant else None


class ApiKeys(OwnTables):
    """The keys' table in the store's database (store/own_tables.py): the keys of its tenant
    (None: of the store without a tenant)."""

    statements = (TABLE,)

    def __init__(self, datastore: Any, postgres: bool, tenant: str | None = None) -> None:
        super().__init__(datastore, postgres)
        self.tenant = tenant

    def _tx(self, *, commit: bool) -> AbstractContextManager[Any]:
        self.ensure()
        return self.transaction(commit=commit)

    def create(self, name: str, scope: str) -> tuple[ApiKey, str]:
        """A new key: its record, and the key itself (shown once, never stored)."""
        if scope not in SCOPES:
            raise DealEngineError(f"unknown scope {scope!r} (scopes: {', '.join(SCOPES)})")
        if not name.strip():
            raise DealEngineError("a key needs a name")
        key_id = secrets.token_hex(4)
        key = f"dek_{key_id}_{secrets.token_urlsafe(32)}"
        key += f".{self.tenant}" if self.tenant else ""
        created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        with self._tx(commit=True) as c:
            c.execute(
                self.sql(
                    "INSERT INTO {p}dealengine_api_keys (id, name, scope, hash, created_at) "
                    "VALUES (?, ?, ?, ?, ?)"
                ),
                (key_id, name, scope, digest(key), created),
            )
        return ApiKey(key_id, name, scope, created), key

    def all(self) -> list[ApiKey]:
        with self._tx(commit=False) as c:
            c.execute(
                self.sql(
                    "SELECT id, name, scope, created_at, revoked_at FROM {p}dealengine_api_keys "
                    "ORDER BY created_at, id"
                )
            )
            return [_key(row) for row in c.fetchall()]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by its id (or its name, when one key has it)."""
        found = [k for k in self.all() if key_id in (k.id, k.name) and k.revoked_at is None]
        if len(found) != 1:
            raise DealEngineError(
                f"no active key {key_id!r}"
                if not found
                else f"{key_id!r} names {len(found)} keys: revoke by id (dealengine keys list)"
            )
        revoked = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        with self._tx(commit=True) as c:
            c.execute(
                self.sql("UPDATE {p}dealengine_api_keys SET revoked_at = ? WHERE id = ?"),
                (revoked, found[0].id),
            )
        return ApiKey(found[0].id, found[0].name, found[0].scope, found[0].created_at, revoked)

    def check(self, key: str) -> ApiKey | None:
        """The key's record, if it is one of ours and not revoked."""
        with self._tx(commit=False) as c:
            c.execute(
                self.sql(
                    "SELECT id, name, scope, created_at, revoked_at, hash FROM "
                    "{p}dealengine_api_keys WHERE hash = ?"
                ),
                (digest(key),),
            )
            row = c.fetchone()
        if row is None or not hmac.compare_digest(row["hash"], digest(key)):
            return None
        found = _key(row)
        return None if found.revoked_at else found


def _key(row: Any) -> ApiKey:
    return ApiKey(row["id"], row["name"], row["scope"], row["created_at"], row["revoked_at"])
