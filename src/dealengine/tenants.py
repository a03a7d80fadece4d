"""Tenants: many workspaces in one deployment, each with its own store (store/tenants.py says
where), and so its own views, tracking, subscriptions, keys and definitions.

`Tenants` is the engine factory of a host serving many of them (a web app): one Engine per
tenant, opened on first use and shared by every thread. `work_every_tenant` runs a worker's
loop (the projection workers, the webhooks) for the store and every tenant, one thread each,
picking up tenants created while it runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from dealengine.engine import Engine
from dealengine.logs import get_logger
from dealengine.settings import Settings
from dealengine.store import tenants as places
from dealengine.subscriptions.webhooks import sync_webhooks
from dealengine.views.materialised import ProjectionName

log = get_logger("dealengine.tenants")
Work = Callable[[Engine, threading.Event], None]


class Tenants:
    """The tenants of the store `settings` name, and an Engine for each (None: the store
    without a tenant). Thread-safe; `close` closes every engine it opened."""

    def __init__(self, settings: Settings | None = None, **engine_options: Any) -> None:
        self.settings = (settings or Settings()).model_copy(update={"tenant": None})
        self.engine_options = engine_options  # pipeline, funnel, clock: for every tenant
        self._engines: dict[str | None, Engine] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Every tenant, sorted."""
        return places.names(self.settings)

    def create(self, name: str) -> None:
        """Make tenant `name` (an error if it exists or the name breaks the rule)."""
        places.create(self.settings, name)

    def drop(self, name: str) -> None:
        """Delete tenant `name` and everything it holds (its engine here is closed first)."""
        name = places.tenant_name(name)
        with self._lock:
            engine = self._engines.pop(name, None)
        if engine is not None:
            engine.close()
        places.drop(self.settings, name)

    def engine(self, name: str | None = None) -> Engine:
        """The engine of tenant `name` (None: the store without a tenant), opened once."""
        if name is not None:
            name = places.tenant_name(name)
        with self._lock:
            found = self._engines.get(name)
            if found is None:
                found = Engine(self.settings, tenant=name, **self.engine_options)
                self._engines[name] = found
            return found

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()

    def __enter__(self) -> Tenants:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def work_every_tenant(
    tenants: Tenants,
    work: Work,
    stopping: threading.Event,
    only: Sequence[str | None] | None = None,
    rescan: float = 5.0,
) -> None:
    """Run `work(engine, stopping)` for the store and every tenant (or only those in `only`),
    each in a thread of its own, until `stopping` is set; tenants created meanwhile are
    picked up every `rescan` seconds. A failing tenant stops them all; its error is raised."""
    threads: dict[str | None, threading.Thread] = {}
    failures: list[BaseException] = []

    def run(name: str | None) -> None:
        try:
            work(tenants.engine(name), stopping)
        except BaseException as e:  # re-raised in the caller's thread
            if name is not None and name not in tenants.names():
                log.info("tenant.dropped", tenant=name)  # not a failure of the others
                return
            log.error("tenant.worker_failed", tenant=name, error=str(e))
            failures.append(e)
            stopping.set()

    while not stopping.is_set():
        wanted = list(only) if only is not None else [None, *tenants.names()]
        for name in wanted:
            if name not in threads:
                log.info("tenant.worker", tenant=name)
                threads[name] = threading.Thread(
                    target=run, args=(name,), name=f"tenant:{name or '-'}", daemon=True
                )
                threads[name].start()
        stopping.wait(rescan)
    for thread in threads.values():
        thread.join()
    if failures:
        raise failures[0]


def follow_views(names: Sequence[ProjectionName], poll: float = 1.0) -> Work:
    """A projection worker's work for one tenant: follow views `names` (PostgreSQL)."""
    return lambda engine, stopping: engine.live.follow_until(stopping, names, poll)


def deliver_webhooks(engine: Engine, stopping: threading.Event) -> None:
    """A subscriptions worker's work for one tenant: deliver its webhooks (none yet: wait for
    some to be added through the API)."""
    subscriptions = engine.subscriptions
    subscriptions.run([], stopping, lambda: sync_webhooks(subscriptions))


__all__ = ["Tenants", "deliver_webhooks", "follow_views", "work_every_tenant"]
