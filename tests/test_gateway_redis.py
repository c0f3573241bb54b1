"""Gateway replicas sharing their online state through Redis (`FEEDLAB_REDIS_URL`): two
`feedlab serve` processes on two ports, a real Redis, real uvicorn over HTTP. A like posted to
one is excluded by the other on its very next request, with no feed-table polling (set to once
an hour here); with Redis stopped both keep serving, degraded, and recover when it returns."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from feedlab.storage.schema import feed
from sqlalchemy import Engine, func, select

from feedlab.processes import free_port, serve_subprocess
from tests.support.db import migrated
from tests.support.gateway import seed_world, wait_until, write_config
from tests.support.redis import PrivateRedis, RedisSpace

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

AT = datetime(2024, 2, 1, 12)
USER = 2


class Replica:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def served(self, at: datetime = AT) -> set[int]:
        params = {"id": USER, "time": at.isoformat(), "limit": 5}
        r = httpx.get(f"{self.url}/post/recommendations/", params=params, timeout=10)
        assert r.status_code == 200, r.text
        return {p["id"] for p in r.json()["recommendations"]}

    def like(self, post_id: int, event_id: str) -> None:
        event = {"user_id": USER, "post_id": post_id, "action": "like", "event_id": event_id}
        event["timestamp"] = (AT - timedelta(hours=1)).isoformat()
        r = httpx.post(f"{self.url}/feed", json=event, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["stored"] == 1

    def health(self) -> dict:
        r = httpx.get(f"{self.url}/health", timeout=10)
        assert r.status_code == 200
        return r.json()


@contextlib.contextmanager
def two_replicas(
    db_url: str, redis_env: dict[str, str], folder: Path
) -> Iterator[tuple[Replica, Replica]]:
    """Two independent gateway processes over one database and one Redis."""
    config = write_config(folder / "exp.yaml")
    with contextlib.ExitStack() as stack:
        replicas = []
        for name in ("a", "b"):
            port = free_port()
            env = {
                "FEEDLAB_DATABASE_URL": db_url,
                "FEEDLAB_SPOOL_DIR": str(folder / f"spool-{name}"),
                "FEEDLAB_FEED_SYNC_INTERVAL": "3600",  # ignored with Redis: nothing is polled
                "FEEDLAB_REDIS_TIMEOUT": "0.2",
                "FEEDLAB_REDIS_RETRY_INTERVAL": "0.2",
                **redis_env,
            }
            args = ["serve", "--port", str(port), "--config", str(config), "--no-watch"]
            stack.enter_context(
                serve_subprocess(args, env, port, folder / f"gateway-{name}.log", timeout=120)
            )
            replicas.append(Replica(port))
        yield replicas[0], replicas[1]


def stored(engine: Engine, event_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).where(feed.c.event_id == event_id)).scalar_one()


def test_a_like_posted_to_one_replica_is_excluded_by_the_other_on_its_next_request(
    pg_url: str, redis_space: RedisSpace, tmp_path: Path
):
    engine = migrated(pg_url)
    seed_world(engine)
    try:
        with two_replicas(pg_url, redis_space.env(), tmp_path) as (a, b):
            assert a.health()["redis"] == b.health()["redis"] == "up"
            before = b.served()
            assert a.served() == before
            top = min(before)  # the seed world makes low ids popular: top is served
            a.like(top, "r-like")
            assert top not in b.served()
            assert top not in a.served()
            # point in time: a feed built before the like was made still shows the post
            assert top in b.served(AT - timedelta(hours=2))
            assert redis_space.keys()  # the stream lives under the test's prefix
    finally:
        engine.dispose()


def test_replicas_keep_serving_while_redis_is_down_and_recover_when_it_returns(
    pg_url: str, private_redis: PrivateRedis, tmp_path: Path
):
    engine = migrated(pg_url)
    seed_world(engine)
    env = {"FEEDLAB_REDIS_URL": private_redis.url, "FEEDLAB_REDIS_PREFIX": "t:"}
    try:
        with two_replicas(pg_url, env, tmp_path) as (a, b):
            before = b.served()
            first, second = sorted(before)[:2]
            a.like(first, "up-like")
            assert first not in b.served()

            private_redis.stop()
            b.served()  # served from local state; this request finds Redis gone
            assert wait_until(lambda: a.health()["redis"] == b.health()["redis"] == "down")
            a.like(second, "down-like")  # stored in the database, never a 5xx
            assert stored(engine, "down-like") == 1
            assert a.health()["redis_pending_events"] == 1
            metrics = httpx.get(f"{a.url}/metrics", timeout=10).text
            assert "feedlab_redis_up 0.0" in metrics
            assert 'feedlab_redis_errors_total{op="sync"}' in metrics
            assert second not in a.served()  # the replica that took it applies it itself
            assert second in b.served()  # the other one cannot know yet: degraded
            assert first not in b.served()  # what it took from Redis before stays

            private_redis.start()  # empty: it kept nothing on disk
            assert wait_until(lambda: a.health()["redis_pending_events"] == 0)
            assert wait_until(lambda: b.health()["redis"] == "up")
            assert second not in b.served()
            assert first not in b.served()
    finally:
        engine.dispose()
