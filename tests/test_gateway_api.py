"""The gateway over real HTTP: uvicorn on 127.0.0.1, real PostgreSQL, requests generated from
its own OpenAPI document. The contract itself is checked in process in
`test_gateway_contract.py`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from feedlab.gateway.app import create_app

from tests.support.gateway import ServerThread, seeded_gateway

pytestmark = pytest.mark.postgres


@pytest.fixture
def gateway_url(pg_url: str, tmp_path: Path) -> Iterator[str]:
    engine, settings = seeded_gateway(pg_url, tmp_path)
    with ServerThread(create_app(settings)) as server:
        yield server.url
    engine.dispose()


@pytest.mark.slow
def test_openapi_driven_fuzzing_finds_no_server_error(gateway_url: str) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(gateway_url + "/openapi.json")
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/admin"):
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=20,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case) -> None:
            response = case.call(base_url=gateway_url, timeout=10)
            assert response.status_code < 500, (case.path, case.query, response.text[:500])

        run()
        checked.append(operation.path)
    assert {"/post/recommendations/", "/feed"} <= set(checked)
    assert httpx.get(gateway_url + "/health", timeout=10).status_code == 200
