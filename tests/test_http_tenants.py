"""HTTP keys are bound to one tenant: a server of many tenants sends each request to the
tenant its key names and checks the key in that tenant's store only; a key of tenant A never
reads or writes tenant B (SQLite and PostgreSQL)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dealengine import Settings
from dealengine.http.app import Limits, create_app
from dealengine.http.tenants import TenantRouter
from dealengine.service.keys import tenant_of
from dealengine.tenants import Tenants
from tests.http_server import free_port, serving_app
from tests.test_cli_host import env_for
from tests.test_tenants import STEPS, tenants  # noqa: F401  (the fixture)

LIMITS = Limits(key_cache_seconds=0)
AT = "2026-03-01T10:00:00Z"


@pytest.fixture
def keys(tenants: Tenants) -> dict[str | None, str]:  # noqa: F811
    return {name: tenants.engine(name).keys.create("app", "write")[1] for name in STEPS}


@pytest.fixture
def client(tenants: Tenants) -> Iterator[httpx.Client]:  # noqa: F811
    with serving_app(TenantRouter(tenants, LIMITS)) as url, httpx.Client(base_url=url) as client:
        yield client


def get(client: httpx.Client, key: str, path: str) -> tuple[int, dict[str, object]]:
    response = client.get(path, headers={"Authorization": f"Bearer {key}"})
    return response.status_code, response.json()


def test_a_tenants_key_names_its_tenant(keys: dict[str | None, str]) -> None:
    assert keys["acme"].endswith(".acme") and tenant_of(keys["acme"]) == "acme"
    assert tenant_of(keys[None]) is None and keys[None].startswith("dek_")


def test_each_key_reads_its_own_tenant(client: httpx.Client, keys: dict[str | None, str]) -> None:
    for name, key in keys.items():
        status, funnel = get(client, key, "/v1/funnel?full=true")
        assert status == 200 and [s["leads"] for s in funnel["steps"]] == STEPS[name]  # type: ignore[attr-defined]
    assert get(client, keys["acme"], "/v1/deals/D-1")[1]["stage"] == "proposal"
    assert get(client, keys["beta"], "/v1/deals/D-1")[1]["stage"] == "closed_won"
    assert get(client, keys[None], "/v1/deals/D-1")[0] == 404  # no D-1 without a tenant


@pytest.mark.parametrize("to", ["beta", "zzz", "Not-A-Name", None])
def test_a_key_moved_to_another_tenant_is_refused(
    client: httpx.Client, keys: dict[str | None, str], to: str | None
) -> None:
    """Given acme's key with its tenant changed (or removed), no store holds it: 401."""
    secret = keys["acme"].rpartition(".")[0]
    moved = f"{secret}.{to}" if to else secret
    status, problem = get(client, moved, "/v1/funnel")
    assert status == 401 and problem["detail"] == "the key is unknown or revoked"


def test_a_key_writes_to_its_own_tenant_only(
    client: httpx.Client,
    keys: dict[str | None, str],
    tenants: Tenants,  # noqa: F811
) -> None:
    visit = {"type": "site_visited", "lead_id": "L-9", "occurred_at": "2026-03-09T10:00:00Z",
             "channel": "x"}  # fmt: skip
    response = client.post(
        "/v1/interactions", json=visit, headers={"Authorization": f"Bearer {keys['beta']}"}
    )
    assert response.status_code == 201, response.text
    assert tenants.engine("beta").funnel().steps[0].leads == STEPS["beta"][0] + 1
    assert tenants.engine("acme").funnel().steps[0].leads == STEPS["acme"][0]
    assert tenants.engine(None).funnel().steps[0].leads == STEPS[None][0]


def test_a_server_of_one_tenant_refuses_the_others_keys(
    tenants: Tenants,  # noqa: F811
    keys: dict[str | None, str],
) -> None:
    with (
        serving_app(create_app(tenants.engine("beta"), LIMITS)) as url,
        httpx.Client(base_url=url) as client,
    ):
        assert get(client, keys["beta"], "/v1/funnel")[0] == 200
        assert get(client, keys["acme"], "/v1/funnel")[0] == 401
        assert get(client, keys[None], "/v1/funnel")[0] == 401


@pytest.mark.parametrize("only", [None, "acme"])
def test_serve_routes_by_the_key_or_serves_its_tenant(tmp_path: Path, only: str | None) -> None:
    """`dealengine serve`: each key reads its own tenant; `serve --tenant acme`: acme's key
    only, every other key refused."""
    settings = Settings(db=str(tmp_path / "s.db"), database_url=None)
    with Tenants(settings) as made:
        keys = {}
        for name, leads in (("acme", 1), ("beta", 2), (None, 3)):
            if name:
                made.create(name)
            for n in range(leads):
                made.engine(name).record("site_visited", f"L-{n}", AT, channel="x")
            keys[name] = made.engine(name).keys.create("app", "read")[1]
    port = free_port()
    args = ["serve", "--port", str(port), *(["--tenant", only] if only else [])]
    server = subprocess.Popen(
        [sys.executable, "-m", "dealengine.cli", *args], env=env_for(tmp_path / "s.db")
    )
    try:
        answers = {name: awaited(port, key, server) for name, key in keys.items()}
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    if only is None:  # by hand: acme 1 lead, beta 2, the store without a tenant 3
        assert answers == {"acme": (200, 1), "beta": (200, 2), None: (200, 3)}
    else:
        assert answers == {"acme": (200, 1), "beta": (401, None), None: (401, None)}


def awaited(port: int, key: str, server: subprocess.Popen[bytes]) -> tuple[int, int | None]:
    """(status, leads at the funnel's first step) of GET /v1/funnel once the server answers."""
    deadline = time.monotonic() + 30
    while True:
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/v1/funnel",
                               headers={"Authorization": f"Bearer {key}"}, timeout=5)  # fmt: skip
            break
        except httpx.TransportError:
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    leads = answer.json()["steps"][0]["leads"] if answer.status_code == 200 else None
    return answer.status_code, leads
