"""A worker process for tests/test_webhooks_crash.py: delivers the webhooks of
DEALENGINE_WEBHOOKS and runs a transactional `ledger` subscriber that writes each notice id to
a table of the store, until SIGTERM (or SIGKILL)."""

from __future__ import annotations

from typing import Any

from dealengine import Engine, Settings
from dealengine.subscriptions.notices import Notice
from dealengine.views.signals import stop_on_signals


def main() -> None:
    with Engine(Settings()) as engine:
        subs = engine.subscriptions
        subs.ensure_tables()
        with subs.tables.transaction(commit=True) as c:
            c.execute(
                subs.tables.sql(
                    "CREATE TABLE IF NOT EXISTS {p}ledger (notice TEXT NOT NULL, "
                    "stream TEXT NOT NULL, version INTEGER NOT NULL)"
                )
            )

        def write(notice: Notice, cursor: Any) -> None:
            cursor.execute(
                subs.tables.sql("INSERT INTO {p}ledger (notice, stream, version) VALUES (?, ?, ?)"),
                (notice.id, f"{notice.aggregate}:{notice.aggregate_id}", notice.version),
            )

        engine.subscribe("ledger", write, transactional=True, run=False)
        with stop_on_signals() as stopping:
            subs.work(stopping, ["ledger"])


if __name__ == "__main__":
    main()
