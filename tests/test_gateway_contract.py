"""The gateway's API contract, in process: `create_app(settings)` served through httpx's
ASGITransport (no uvicorn, no sockets), on SQLite, and on PostgreSQL when it answers.

What is checked here is what a client relies on: the response shape, 422s that name the
parameter, cold start, liked-post exclusion, idempotent feedback, fallback when a model
backend fails, health/metrics/docs and the admin token. Outages and worker processes need
real servers and stay in the uvicorn + PostgreSQL tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from feedlab.experiments.assignment import Assigner
from feedlab.experiments.config import load_config
from feedlab.gateway.app import create_app
from feedlab.gateway.settings import Settings
from feedlab.storage.schema import exposure_items, exposures, feed
from sqlalchemy import Engine, Table, func, select

from feedlab.processes import free_port
from tests.support.gateway import seeded_gateway, write_config

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token"
FEB = "2024-02-01T00:00:00"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class World:
    engine: Engine
    settings: Settings

    def count(self, table: Table) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def exposure_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(exposures)).mappings()]


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    """The seeded world (10 users, 30 posts, January 2024) and the gateway's settings."""
    engine, settings = seeded_gateway(db_url, tmp_path, admin_token=TOKEN, watch_config=False)
    yield World(engine, settings)
    engine.dispose()


@contextlib.asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run; leaving flushes the exposure log (no waiting)."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gateway") as client,
    ):
        yield client


async def recommend(client: httpx.AsyncClient, user_id: object, **params: object) -> httpx.Response:
    return await client.get("/post/recommendations/", params={"id": user_id, **params})


def ids(response: httpx.Response) -> list[int]:
    return [p["id"] for p in response.json()["recommendations"]]


async def test_body_shape_assignment_and_one_exposure_per_response(world: World) -> None:
    loaded = load_config(world.settings.config_path)
    assigner = Assigner(loaded.config)
    served = {}
    async with gateway(world.settings) as client:
        for uid in (1, 2, 3, 4, 5, 123456):
            r = await recommend(client, uid, time=FEB, limit=4)
            assert r.status_code == 200
            body = r.json()
            assert set(body) == {"exp_group", "recommendations"}
            assert body["exp_group"] == assigner.assign(uid).exp_group
            assert 1 <= len(body["recommendations"]) <= 4
            for post in body["recommendations"]:
                assert set(post) == {"id", "text", "topic"}
                assert post["text"] == f"post number {post['id']}"
            served[r.headers["X-Request-ID"]] = (uid, body)
    rows = world.exposure_rows()
    assert {row["request_id"] for row in rows} == set(served)
    assert world.count(exposure_items) == sum(len(b["recommendations"]) for _, b in served.values())
    for row in rows:
        uid, body = served[row["request_id"]]
        assert row["user_id"] == uid
        assert row["exp_group"] == body["exp_group"]
        assert row["post_ids"] == [p["id"] for p in body["recommendations"]]
        assert row["ts"] == datetime.fromisoformat(FEB)
        assert row["config_version"] == loaded.version
        assert (row["experiment"], row["model"], row["model_version"]) == ("exp1", "popular", "30d")
        assert row["fallback"] is False


async def test_liked_posts_are_never_served_and_a_new_like_counts_at_once(world: World) -> None:
    async with gateway(world.settings) as client:
        served = ids(await recommend(client, 1, time=FEB, limit=100))
        assert served and len(served) == len(set(served))
        assert not {1, 2, 3} & set(served)  # user 1 liked posts 1-3 in January
        top = served[0]
        like = {"timestamp": "2024-01-31T12:00:00", "user_id": 1, "post_id": top}
        r = await client.post("/feed", json={**like, "action": "like"})
        assert r.json()["stored"] == 1
        assert top not in ids(await recommend(client, 1, time=FEB, limit=100))
        # point in time: an hour before the like, the post is still a candidate
        assert top in ids(await recommend(client, 1, time="2024-01-31T11:00:00", limit=100))


async def test_unknown_user_gets_cold_start_posts_and_is_assigned_and_logged(
    world: World,
) -> None:
    uid = 9_876_543_210
    async with gateway(world.settings) as client:
        r = await recommend(client, uid, time=FEB)
    assert r.status_code == 200
    body = r.json()
    assert len(body["recommendations"]) == 5
    assert (
        body["exp_group"]
        == Assigner(load_config(world.settings.config_path).config).assign(uid).exp_group
    )
    [row] = world.exposure_rows()
    assert (row["request_id"], row["user_id"], row["model"]) == (
        r.headers["X-Request-ID"],
        uid,
        "popular",
    )


BAD_QUERIES = [
    ({"id": "abc"}, "id"),
    ({"id": "1.5"}, "id"),
    ({"id": -3}, "id"),
    ({}, "id"),
    ({"id": 2**63}, "id"),
    ({"id": 2**53}, "id"),
    ({"id": 1, "time": "yesterday"}, "time"),
    ({"id": 1, "time": "2024-13-01T00:00:00"}, "time"),
    ({"id": 1, "time": "0001-01-01T00:00:00+05:00"}, "time"),
    ({"id": 1, "time": "9999-12-31T23:59:59-05:00"}, "time"),
    ({"id": 1, "time": "1969-12-31T23:59:59"}, "time"),
    ({"id": 1, "time": "2100-01-01T00:00:00"}, "time"),
    ({"id": 1, "time": "1700000000"}, "time"),
    ({"id": 1, "limit": 0}, "limit"),
    ({"id": 1, "limit": 101}, "limit"),
    ({"id": 1, "limit": "ten"}, "limit"),
]


async def test_bad_input_is_422_naming_the_parameter(world: World) -> None:
    async with gateway(world.settings) as client:
        for query, param in BAD_QUERIES:
            r = await client.get("/post/recommendations/", params=query)
            assert r.status_code == 422, query
            body = r.json()
            assert body["message"].startswith(f"{param}:"), (query, body)
            assert body["detail"][0]["loc"] == ["query", param]
        assert (await recommend(client, 0, limit=100)).status_code == 200
        assert (await recommend(client, 2**53 - 1, limit=1)).status_code == 200
        a = await recommend(client, 4, time="2024-01-20T12:00:00", limit=10)
        b = await recommend(client, 4, time="2024-01-20T14:00:00+02:00", limit=10)
        assert a.json() == b.json()  # tz-aware input is converted to UTC
    assert len(world.exposure_rows()) == 4  # refused requests are not logged


async def test_feed_is_validated_and_idempotent_by_event_id(world: World) -> None:
    before = world.count(feed)
    event = {
        "event_id": "ev-1",
        "timestamp": "2024-01-30T10:00:00Z",
        "user_id": 2,
        "post_id": 7,
        "action": "view",
        "target": 0,
    }
    batch = [event, {**event, "event_id": "ev-2", "action": "like", "target": None}]
    no_id = {k: v for k, v in event.items() if k != "event_id"}
    async with gateway(world.settings) as client:
        first = await client.post("/feed", json=event)
        assert first.json() == {"received": 1, "stored": 1, "duplicates": 0}
        again = await client.post("/feed", json=batch)
        assert again.json() == {"received": 2, "stored": 1, "duplicates": 1}
        assert (await client.post("/feed", json=no_id)).json()["stored"] == 1
        assert (await client.post("/feed", json=no_id)).json()["stored"] == 0
        for bad, field in (
            ({**event, "action": "share"}, "action"),
            ({**event, "event_id": "ev\x003"}, "event_id"),
            ({**event, "user_id": "me"}, "user_id"),
        ):
            r = await client.post("/feed", json=bad)
            assert r.status_code == 422 and field in r.json()["message"], r.json()
        assert (await client.post("/feed", json=[])).status_code == 422
    assert world.count(feed) == before + 3
    with world.engine.connect() as conn:
        stored = conn.execute(select(feed.c.timestamp).where(feed.c.event_id == "ev-1")).scalar()
    assert stored == datetime(2024, 1, 30, 10)  # naive UTC


async def test_a_failing_backend_falls_back_with_the_same_exp_group(
    world: World, tmp_path: Path
) -> None:
    """The test arm's model service is down (nothing listens on its port): the gateway still
    answers 200 with the assigned exp_group, serves `popular` and marks the exposure."""
    gone = f'  gone: {{backend: http, url: "http://127.0.0.1:{free_port()}", timeout_ms: 200}}\n'
    config = write_config(tmp_path / "down.yaml", test="gone", models=gone)
    settings = world.settings.model_copy(update={"config_path": config})
    assigner = Assigner(load_config(config).config)
    arms = {uid: assigner.assign(uid).exp_group for uid in range(1, 11)}
    assert set(arms.values()) == {"control", "test"}
    async with gateway(settings) as client:
        answers = {uid: await recommend(client, uid, time=FEB) for uid in arms}
        metrics = (await client.get("/metrics")).text
    for uid, r in answers.items():
        assert r.status_code == 200
        assert r.json()["exp_group"] == arms[uid]
        assert len(r.json()["recommendations"]) == 5
    rows = {row["user_id"]: row for row in world.exposure_rows()}
    for uid, group in arms.items():
        assert rows[uid]["exp_group"] == group
        assert rows[uid]["model"] == "popular"
        assert rows[uid]["fallback"] is (group == "test")
    n_test = sum(g == "test" for g in arms.values())
    [fallbacks] = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("feedlab_fallbacks_total{") and 'model="gone"' in line
    ]
    assert fallbacks == n_test


async def test_health_metrics_and_docs(world: World) -> None:
    async with gateway(world.settings) as client:
        health = (await client.get("/health")).json()
        for uid in (1, 2, 3):
            await recommend(client, uid)
        await recommend(client, "bad")
        metrics = (await client.get("/metrics")).text
        docs = await client.get("/docs")
        openapi = (await client.get("/openapi.json")).json()
    assert health["status"] == "ok"
    assert health["config_version"] == load_config(world.settings.config_path).version
    assert health["models"] == {"popular": {"backend": "inprocess", "version": "30d"}}
    assert health["posts"] == 30 and health["history_events"] > 0
    served = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("feedlab_recommendation_requests_total{")
    )
    assert served == 3
    for name in (
        "feedlab_recommendation_latency_seconds_bucket",
        "feedlab_exposure_queue_depth",
        "feedlab_exposures_dropped_total",
        "feedlab_fallbacks_total",
        "feedlab_invalid_requests_total",
    ):
        assert name in metrics
    assert docs.status_code == 200
    assert {"/post/recommendations/", "/feed", "/health", "/metrics"} <= set(openapi["paths"])


async def test_admin_needs_the_bearer_token(world: World) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with gateway(world.settings) as client:
        for method, path in (("GET", "/admin/config"), ("POST", "/admin/reload")):
            assert (await client.request(method, path)).status_code == 401
            wrong = await client.request(method, path, headers={"Authorization": "Bearer no"})
            assert wrong.status_code == 401
            assert (await client.request(method, path, headers=bearer)).status_code == 200
        cfg = (await client.get("/admin/config", headers=bearer)).json()
    assert cfg["config"]["experiments"][0]["salt"] == "s1"
    assert cfg["last_error"] is None
    disabled = world.settings.model_copy(update={"admin_token": None})
    async with gateway(disabled) as client:
        for method, path in (("GET", "/admin/config"), ("POST", "/admin/reload")):
            r = await client.request(method, path, headers=bearer)
            assert r.status_code == 403 and "disabled" in r.json()["detail"]
