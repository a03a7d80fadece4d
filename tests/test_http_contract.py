"""The OpenAPI schema as the contract: schemathesis generates requests for every operation
(bounded examples) against a real server; none may get a 5xx. The event stream is left out
(it streams until the client leaves; tests/test_http.py covers it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from dealengine import Engine, Settings
from tests.http_server import serving


@pytest.fixture
def live(settings: Settings) -> Iterator[tuple[str, str]]:
    with Engine(settings) as engine:
        engine.record("ad_viewed", "L-1", "2026-03-01T10:00:00Z", channel="paid", campaign="c")
        engine.record(
            "deal_opened", "D-1", "2026-03-03T10:00:00Z", lead_id="L-1", amount="10", owner="ana"
        )
        _, key = engine.keys.create("contract", "admin")
        with serving(engine) as url:
            yield url, key


def test_no_request_the_schema_allows_gets_a_server_error(live: tuple[str, str]) -> None:
    url, key = live
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json").exclude(path="/v1/events")
    headers = {"Authorization": f"Bearer {key}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 18  # all but the event stream
    failures: list[str] = []
    seen: dict[int, int] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(base_url=url, headers=headers, timeout=30)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query}: {response.status_code} {response.text[:300]}"
                )

        no_server_error()
    assert seen.get(200, 0) > 0, seen  # some requests got through to the engine
    assert not failures, "\n".join(failures[:10])
