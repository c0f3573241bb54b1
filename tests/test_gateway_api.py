"""The gateway over real HTTP: uvicorn on 127.0.0.1, real PostgreSQL: input at the edges
(timestamps, reused event ids), hypothesis over the two public endpoints, and schemathesis
over the whole OpenAPI document. The contract itself is checked in process in
`test_gateway_contract.py`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from feedlab.gateway.app import create_app
from feedlab.storage.schema import feed
from sqlalchemy import Engine

from tests.support.gateway import ServerThread, count, seeded_gateway

pytestmark = pytest.mark.postgres

TOKEN = "s3cret-token"


@dataclass
class Gateway:
    url: str
    engine: Engine

    def get(self, path: str, **params: object) -> httpx.Response:
        return httpx.get(self.url + path, params=params, timeout=10)


@pytest.fixture
def gateway(pg_url: str, tmp_path: Path) -> Iterator[Gateway]:
    engine, settings = seeded_gateway(pg_url, tmp_path, admin_token=TOKEN)
    with ServerThread(create_app(settings)) as server:
        yield Gateway(server.url, engine)
    engine.dispose()


def gateway_post(gateway: Gateway, path: str, body: object) -> httpx.Response:
    return httpx.post(gateway.url + path, json=body, timeout=10)


def test_timestamps_out_of_range_get_422_naming_the_field(gateway: Gateway):
    event = {"timestamp": "2024-01-30T10:00:00Z", "user_id": 2, "post_id": 7, "action": "view"}
    for ts in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "1969-12-31T23:00:00"):
        r = gateway_post(gateway, "/feed", {**event, "timestamp": ts})
        assert r.status_code == 422, ts
        assert "timestamp" in r.json()["message"] and "1970-2099" in r.json()["message"]
        batch = gateway_post(gateway, "/feed", [event, {**event, "timestamp": ts}])
        assert batch.status_code == 422 and "[1]: timestamp" in batch.json()["message"]
    edge = gateway_post(gateway, "/feed", {**event, "timestamp": "2099-12-31T23:59:59-05:00"})
    assert edge.status_code == 200  # as written in range; 2100-01-01T04:59:59 in UTC
    assert gateway_post(gateway, "/feed", {**event, "user_id": True}).status_code == 422


def test_a_reused_event_id_with_other_content_is_refused_with_409(gateway: Gateway):
    event = {
        "event_id": "ev-409",
        "timestamp": "2024-01-30T10:00:00Z",
        "user_id": 2,
        "post_id": 7,
        "action": "view",
    }
    assert gateway_post(gateway, "/feed", event).json()["stored"] == 1
    before = count(gateway.engine, feed)
    other = {**event, "event_id": "ev-410"}
    r = gateway_post(gateway, "/feed", [other, {**event, "action": "like"}])
    assert r.status_code == 409 and "ev-409" in r.json()["detail"]
    assert count(gateway.engine, feed) == before  # the whole request is refused
    same_time_other_offset = {**event, "timestamp": "2024-01-30T11:00:00+01:00"}
    assert gateway_post(gateway, "/feed", same_time_other_offset).json()["duplicates"] == 1
    twice = gateway_post(gateway, "/feed", [other, {**other, "post_id": 8}])
    assert twice.status_code == 409 and count(gateway.engine, feed) == before


def test_arbitrary_datetimes_offsets_and_ids_never_get_a_server_error(gateway: Gateway):
    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st

    offsets = st.one_of(
        st.just(""),
        st.just("Z"),
        st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
            lambda m: f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"
        ),
    )
    stamps = st.one_of(
        st.builds(lambda d, o: d.isoformat() + o, st.datetimes(), offsets),
        st.text(max_size=40),
    )
    ids = st.one_of(
        st.integers(-(2**70), 2**70),
        st.booleans(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=5),
    )
    client = httpx.Client(base_url=gateway.url, timeout=10)

    seen: set[tuple[str, int]] = set()

    @given(stamp=stamps, user=ids, post=ids, event_id=st.none() | st.text(max_size=70))
    @example(stamp="2024-01-30T10:00:00+01:00", user=1, post=2, event_id=None)
    @example(stamp="9999-12-31T23:59:59-05:00", user=1, post=2, event_id="e")
    @settings(
        max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(stamp, user, post, event_id) -> None:
        event = {"timestamp": stamp, "user_id": user, "post_id": post, "action": "like"}
        if event_id is not None:
            event["event_id"] = event_id
        r = client.post("/feed", json=event)
        assert r.status_code in (200, 409, 422), (event, r.text[:300])
        seen.add(("feed", r.status_code))
        r = client.get("/post/recommendations/", params={"id": user, "time": stamp})
        assert r.status_code in (200, 422), (user, stamp, r.text[:300])
        seen.add(("recommendations", r.status_code))
        if r.status_code == 422:
            assert r.json()["message"].split(":")[0] in ("id", "time")

    try:
        check()
    finally:
        client.close()
    assert {("feed", 200), ("feed", 422), ("recommendations", 200)} <= seen
    assert ("recommendations", 422) in seen
    assert gateway.get("/health").json()["exposures_dead_lettered"] == 0


@pytest.mark.slow
def test_schemathesis_all_checks_find_no_server_error_and_no_schema_violation(
    gateway: Gateway, tmp_path: Path
):
    """Every operation, admin included (with the token; `ignored_auth` probes without it),
    every check. `positive_data_acceptance` on `POST /feed` also accepts the 422 the schema
    documents for a schema-valid event naming a post the gateway does not know (no JSON schema
    can express the set of posts loaded at start-up).
    `filter_too_much` is a generation health check: the timestamp pattern (years 1970-2099)
    on top of the date-time format rejects most generated candidates, by design."""
    (tmp_path / "schemathesis.toml").write_text(
        "[[operations]]\n"
        'include-path = "/feed"\n'
        'include-method = "POST"\n'
        "checks.positive_data_acceptance.expected-statuses = "
        '["2xx", "401", "403", "404", "409", "422"]\n'
    )
    cli = Path(sys.executable).parent / "schemathesis"
    run = subprocess.run(
        [
            str(cli),
            "run",
            f"{gateway.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--workers",
            "1",
            "--suppress-health-check",
            "filter_too_much",
            "-H",
            f"Authorization: Bearer {TOKEN}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-5000:]
    assert "6 selected / 6 total" in out and "passed" in out
