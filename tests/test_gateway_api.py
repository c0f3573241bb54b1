"""The gateway API end to end: real uvicorn on 127.0.0.1, real PostgreSQL, `popular` arms."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from feedlab.experiments.assignment import Assigner
from feedlab.experiments.config import load_config
from feedlab.gateway.app import create_app
from feedlab.gateway.settings import Settings
from feedlab.storage.schema import exposure_items, exposures, feed
from sqlalchemy import Engine, func, select

from tests.support.db import migrated
from tests.support.gateway import ServerThread, seed_world, wait_until, write_config

pytestmark = pytest.mark.postgres

TOKEN = "s3cret-token"
FEB = "2024-02-01T00:00:00"


@dataclass
class Gateway:
    url: str
    engine: Engine
    settings: Settings

    def get(self, path: str, **params: object) -> httpx.Response:
        return httpx.get(self.url + path, params=params, timeout=10)

    def recommend(self, user_id: int | str, **params: object) -> httpx.Response:
        return self.get("/post/recommendations/", id=user_id, **params)


def count(engine: Engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


@pytest.fixture
def gateway(pg_url: str, tmp_path: Path) -> Iterator[Gateway]:
    engine = migrated(pg_url)
    seed_world(engine)
    settings = Settings(
        database_url=pg_url,
        config_path=write_config(tmp_path / "exp.yaml"),
        spool_dir=tmp_path / "spool",
        admin_token=TOKEN,
    )
    with ServerThread(create_app(settings)) as server:
        yield Gateway(server.url, engine, settings)
    engine.dispose()


def test_body_has_exactly_the_design_shape_and_one_exposure_per_response(gateway: Gateway):
    assigner = Assigner(load_config(gateway.settings.config_path).config)
    served = {}
    for uid in (1, 2, 3, 4, 5, 123456):
        r = gateway.recommend(uid, time=FEB, limit=4)
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"exp_group", "recommendations"}
        assert body["exp_group"] == assigner.assign(uid).exp_group
        assert 1 <= len(body["recommendations"]) <= 4
        for post in body["recommendations"]:
            assert set(post) == {"id", "text", "topic"}
            assert post["text"] == f"post number {post['id']}"
        served[r.headers["X-Request-ID"]] = (uid, body)
    assert wait_until(lambda: count(gateway.engine, exposures) == len(served))
    with gateway.engine.connect() as conn:
        rows = conn.execute(select(exposures)).mappings().all()
        n_items = conn.execute(select(func.count()).select_from(exposure_items)).scalar_one()
    assert n_items == sum(len(b["recommendations"]) for _, b in served.values())
    version = load_config(gateway.settings.config_path).version
    for row in rows:
        uid, body = served[row["request_id"]]
        assert row["user_id"] == uid
        assert row["exp_group"] == body["exp_group"]
        assert row["post_ids"] == [p["id"] for p in body["recommendations"]]
        assert row["ts"] == datetime.fromisoformat(FEB)
        assert row["config_version"] == version
        assert row["experiment"] == "exp1"
        assert row["model"] == "popular" and row["model_version"] == "30d"
        assert row["fallback"] is False
        assert row["latency_ms"] >= 0


def test_never_a_liked_post_never_a_repeat_and_likes_count_at_once(gateway: Gateway):
    r = gateway.recommend(1, time=FEB, limit=100)
    ids = [p["id"] for p in r.json()["recommendations"]]
    assert ids and len(ids) == len(set(ids))
    assert not {1, 2, 3} & set(ids)  # user 1 liked posts 1-3 in January
    top = ids[0]
    like = {"timestamp": "2024-01-31T12:00:00", "user_id": 1, "post_id": top, "action": "like"}
    assert gateway_post(gateway, "/feed", like).json()["stored"] == 1
    after = [p["id"] for p in gateway.recommend(1, time=FEB, limit=100).json()["recommendations"]]
    assert top not in after
    before_like = gateway.recommend(1, time="2024-01-31T11:00:00", limit=100).json()
    assert top in [p["id"] for p in before_like["recommendations"]]


def gateway_post(gateway: Gateway, path: str, body: object, **kw: object) -> httpx.Response:
    return httpx.post(gateway.url + path, json=body, timeout=10, **kw)


def test_unknown_user_gets_cold_start_posts_and_is_assigned_and_logged(gateway: Gateway):
    uid = 9_876_543_210
    r = gateway.recommend(uid, time=FEB)
    assert r.status_code == 200
    body = r.json()
    assert len(body["recommendations"]) == 5
    assert body["exp_group"] in ("control", "test")
    rid = r.headers["X-Request-ID"]

    def logged() -> bool:
        with gateway.engine.connect() as conn:
            return conn.execute(
                select(exposures.c.user_id, exposures.c.model).where(exposures.c.request_id == rid)
            ).all() == [(uid, "popular")]

    assert wait_until(logged)


BAD_QUERIES = [
    ({"id": "abc"}, "id"),
    ({"id": "1.5"}, "id"),
    ({"id": -3}, "id"),
    ({}, "id"),
    ({"id": 2**63}, "id"),
    ({"id": 1, "time": "yesterday"}, "time"),
    ({"id": 1, "time": "2024-13-01T00:00:00"}, "time"),
    ({"id": 1, "time": "0001-01-01T00:00:00+05:00"}, "time"),
    ({"id": 1, "limit": 0}, "limit"),
    ({"id": 1, "limit": 101}, "limit"),
    ({"id": 1, "limit": "ten"}, "limit"),
]


def test_bad_input_is_422_naming_the_parameter(gateway: Gateway):
    for query, param in BAD_QUERIES:
        r = gateway.get("/post/recommendations/", **query)
        assert r.status_code == 422, query
        body = r.json()
        assert body["message"].startswith(f"{param}:"), (query, body)
        assert body["detail"][0]["loc"] == ["query", param]
    assert gateway.recommend(0, limit=100).status_code == 200
    assert gateway.recommend(2**63 - 1, limit=1).status_code == 200


def test_tz_aware_time_is_taken_as_utc(gateway: Gateway):
    a = gateway.recommend(4, time="2024-01-20T12:00:00", limit=10).json()
    b = gateway.recommend(4, time="2024-01-20T14:00:00+02:00", limit=10).json()
    assert a == b


def test_feed_validated_and_idempotent_by_event_id(gateway: Gateway):
    before = count(gateway.engine, feed)
    event = {
        "event_id": "ev-1",
        "timestamp": "2024-01-30T10:00:00Z",
        "user_id": 2,
        "post_id": 7,
        "action": "view",
        "target": 0,
    }
    assert gateway_post(gateway, "/feed", event).json() == {
        "received": 1,
        "stored": 1,
        "duplicates": 0,
    }
    batch = [event, {**event, "event_id": "ev-2", "action": "like", "target": None}]
    assert gateway_post(gateway, "/feed", batch).json() == {
        "received": 2,
        "stored": 1,
        "duplicates": 1,
    }
    no_id = {k: v for k, v in event.items() if k != "event_id"}
    assert gateway_post(gateway, "/feed", no_id).json()["stored"] == 1
    assert gateway_post(gateway, "/feed", no_id).json()["stored"] == 0
    assert count(gateway.engine, feed) == before + 3
    with gateway.engine.connect() as conn:
        stored = conn.execute(select(feed.c.timestamp).where(feed.c.event_id == "ev-1")).scalar()
    assert stored == datetime(2024, 1, 30, 10)  # naive UTC
    bad = gateway_post(gateway, "/feed", {**event, "action": "share"})
    assert bad.status_code == 422 and "action" in bad.json()["message"]
    assert gateway_post(gateway, "/feed", []).status_code == 422
    nul = gateway_post(gateway, "/feed", {**event, "event_id": "ev\x003"})
    assert nul.status_code == 422 and "event_id" in nul.json()["message"]
    assert count(gateway.engine, feed) == before + 3


def test_health_metrics_and_docs(gateway: Gateway):
    health = gateway.get("/health").json()
    assert health["status"] == "ok"
    assert health["config_version"] == load_config(gateway.settings.config_path).version
    assert health["models"] == {"popular": {"backend": "inprocess", "version": "30d"}}
    assert health["posts"] == 30 and health["history_events"] > 0
    for uid in (1, 2, 3):
        gateway.recommend(uid)
    gateway.recommend("bad")
    metrics = gateway.get("/metrics").text
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
    assert gateway.get("/docs").status_code == 200
    paths = gateway.get("/openapi.json").json()["paths"]
    assert {"/post/recommendations/", "/feed", "/health", "/metrics"} <= set(paths)


def test_admin_needs_the_bearer_token(gateway: Gateway, tmp_path: Path):
    for path, method in (("/admin/config", httpx.get), ("/admin/reload", httpx.post)):
        assert method(gateway.url + path).status_code == 401
        wrong = method(gateway.url + path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = method(gateway.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
    cfg = httpx.get(
        gateway.url + "/admin/config", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert cfg["config"]["experiments"][0]["salt"] == "s1"
    assert cfg["last_error"] is None

    disabled = gateway.settings.model_copy(update={"admin_token": None, "watch_config": False})
    with ServerThread(create_app(disabled)) as other:
        for path, method in (("/admin/config", httpx.get), ("/admin/reload", httpx.post)):
            r = method(other.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 403
            assert "disabled" in r.json()["detail"]


@pytest.mark.slow
def test_openapi_driven_fuzzing_finds_no_server_error(gateway: Gateway):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(gateway.url + "/openapi.json")
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
            response = case.call(base_url=gateway.url, timeout=10)
            assert response.status_code < 500, (case.path, case.query, response.text[:500])

        run()
        checked.append(operation.path)
    assert {"/post/recommendations/", "/feed"} <= set(checked)
    assert gateway.get("/health").status_code == 200
