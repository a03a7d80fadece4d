"""Tables of dealengine's own beside the events (subscriptions, deliveries, webhooks, API keys),
in the store's database: the SQLite file, or the store's PostgreSQL schema. They are written
through the store's datastore, so a write can share a transaction with the store's.

SQL is written once: `{p}` is the schema prefix (none on SQLite), `?` becomes `%s` on
PostgreSQL. The tables are created on first use.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, ClassVar


class OwnTables:
    statements: ClassVar[tuple[str, ...]] = ()  # CREATE ... IF NOT EXISTS, in order

    def __init__(self, datastore: Any, postgres: bool) -> None:
        self.datastore = datastore  # eventsourcing's: `transaction(commit=...)` gives a cursor
        self.postgres = postgres
        self.prefix = f'"{datastore.schema}".' if postgres else ""
        self._created = False

    def sql(self, statement: str) -> str:
        statement = statement.replace("{p}", self.prefix)
        return statement.replace("?", "%s") if self.postgres else statement

    def transaction(self, *, commit: bool) -> AbstractContextManager[Any]:
        return self.datastore.transaction(commit=commit)  # type: ignore[no-any-return]

    def ensure(self) -> None:
        """Create the tables, once per instance (the statements may run again: IF NOT EXISTS)."""
        if self._created:
            return
        with self.transaction(commit=True) as c:
            for statement in self.statements:
                c.execute(self.sql(statement))
        self._created = True
