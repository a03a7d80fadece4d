"""One server for the store and every tenant: each request goes to the API of the tenant its
key names (`dek_<id>_<secret>.<tenant>`, dealengine.service.keys), and that API checks the key
in that tenant's store only, so a key of one tenant never reads or writes another. A request
whose key names no tenant, or a tenant that does not exist, goes to the store without a
tenant, which refuses a key it does not hold (401)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from dealengine.domain.errors import UnknownTenant
from dealengine.domain.values import check_tenant
from dealengine.engine import Engine
from dealengine.http.app import Limits, create_app
from dealengine.service.keys import tenant_of
from dealengine.tenants import Tenants


class TenantRouter:
    """An ASGI app: the API of each tenant (made on its first request, through `tenants`, the
    engine factory); `on_open` is called with each engine opened (to start its webhooks)."""

    def __init__(
        self,
        tenants: Tenants,
        limits: Limits | None = None,
        on_open: Callable[[Engine], None] | None = None,
    ) -> None:
        self.tenants, self.limits, self.on_open = tenants, limits, on_open
        self.apps: dict[str | None, FastAPI] = {}
        self._opening = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenant = _tenant(scope) if scope["type"] == "http" else None
        app = self.apps.get(tenant)
        if app is None:  # opening a store blocks: not on the event loop
            app = await run_in_threadpool(self.app_for, tenant)
        await app(scope, receive, send)

    def app_for(self, tenant: str | None) -> FastAPI:
        """The API of `tenant`, or of the store without a tenant if there is no such tenant."""
        with self._opening:
            return self._open(tenant)

    def _open(self, tenant: str | None) -> FastAPI:
        if tenant not in self.apps:
            try:
                engine = self.tenants.engine(tenant)
            except UnknownTenant:
                if tenant is None:
                    raise
                return self._open(None)
            if self.on_open is not None:
                self.on_open(engine)
            self.apps[tenant] = create_app(engine, self.limits)
        return self.apps[tenant]


def _tenant(scope: Scope) -> str | None:
    """The tenant the request's bearer key names, if it is a tenant's name at all."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            _, _, token = value.decode("latin-1").partition(" ")
            tenant = tenant_of(token.strip())
            try:
                return check_tenant(tenant) if tenant else None
            except ValueError:
                return None
    return None


__all__ = ["TenantRouter"]
