"""Several gateway workers: each holds its own History, and a feed event stored by one counts
on every other one (`gateway.feed_sync`)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from feedlab.gateway.feed_sync import FeedFollower, follow_feed, last_feed_id
from feedlab.storage.engine import make_engine
from feedlab.storage.schema import feed
from sqlalchemy import Engine, insert

from feedlab.processes import free_port, serve_subprocess
from tests.support.db import migrated
from tests.support.gateway import (
    Clock,
    TcpProxy,
    proxied,
    seed_world,
    upstream,
    wait_until,
    write_config,
)

AT = datetime(2024, 2, 1, 12)


def store(engine: Engine, *rows: tuple[str, int, int]) -> None:
    """Feed rows as (event_id, post_id, explicit row id or 0 for the next one)."""
    with engine.begin() as conn:
        for event_id, post_id, row_id in rows:
            values = {
                "event_id": event_id,
                "timestamp": AT,
                "user_id": 1,
                "post_id": post_id,
                "action": "like",
            }
            conn.execute(insert(feed), {**values, "id": row_id} if row_id else values)


def test_follower_yields_each_foreign_row_once_also_when_ids_commit_out_of_order(engine):
    seed_world(engine)
    start = last_feed_id(engine)
    clock = Clock()
    follower = FeedFollower(engine, start, gap_timeout=60, clock=clock)
    store(engine, ("a", 1, 0), ("b", 2, 0))
    assert [e.post_id for e in follower.take(follower.fetch())] == [1, 2]
    assert follower.take(follower.fetch()) == []
    # a row this worker stored and applied itself is not applied again
    assert follower.claim(["mine", "a"]) == {"mine"}
    store(engine, ("mine", 3, 0))
    assert follower.take(follower.fetch()) == []
    # a lower id committed after a higher one (concurrent PostgreSQL transactions), even
    # many polls later: the gap below the highest id is re-read until it fills
    store(engine, ("late-high", 4, start + 100))
    assert [e.post_id for e in follower.take(follower.fetch())] == [4]
    for _ in range(50):
        clock.now += 0.1
        assert follower.take(follower.fetch()) == []
    store(engine, ("late-low", 5, start + 50), ("late-low-2", 7, start + 51))
    assert [e.post_id for e in follower.take(follower.fetch())] == [5, 7]
    assert follower.take(follower.fetch()) == []
    # a gap older than gap_timeout is given up (burnt ids): not queried any more
    clock.now += 61
    assert follower.take(follower.fetch()) == []
    store(engine, ("too-late", 8, start + 60))
    assert follower.take(follower.fetch()) == []
    store(engine, ("c", 6, start + 101))
    assert [e.post_id for e in follower.take(follower.fetch())] == [6]


@pytest.mark.slow
@pytest.mark.postgres
def test_a_like_posted_to_one_worker_is_excluded_by_all(pg_url: str, tmp_path: Path):
    engine = migrated(pg_url)
    seed_world(engine)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"FEEDLAB_DATABASE_URL": pg_url, "FEEDLAB_SPOOL_DIR": str(tmp_path / "spool")}
    config = write_config(tmp_path / "exp.yaml")
    args = ["serve", "--port", str(port), "--config", str(config), "--workers", "2"]
    params = {"id": 2, "time": AT.isoformat(), "limit": 5}

    def served() -> set[int]:
        # a new connection each time, so the kernel spreads the requests over both workers
        with httpx.Client(base_url=url, timeout=10) as client:
            r = client.get("/post/recommendations/", params=params)
        assert r.status_code == 200
        return {p["id"] for p in r.json()["recommendations"]}

    try:
        with serve_subprocess(args, env, port, tmp_path / "gateway.log", timeout=120):
            before = [served() for _ in range(20)]
            assert all(s == before[0] for s in before)
            top = min(before[0])  # the seed world makes low ids popular: top is served
            like = {"user_id": 2, "post_id": top, "action": "like", "event_id": "w-like"}
            like["timestamp"] = AT.replace(hour=11).isoformat()
            assert httpx.post(f"{url}/feed", json=like, timeout=10).status_code == 200
            assert wait_until(lambda: all(top not in served() for _ in range(10)), timeout=10)
            assert all(top not in served() for _ in range(40))
    finally:
        engine.dispose()


def test_a_follower_gets_every_row_stored_while_its_database_link_was_down(pg_url: str):
    """Model services and gateway workers poll the feed table: rows stored while a follower
    could not reach the database arrive once it can, none skipped, each once."""
    engine = migrated(pg_url)
    seed_world(engine)
    proxy = TcpProxy(upstream(pg_url))
    via = make_engine(proxied(pg_url, proxy), pre_ping=False)
    follower = FeedFollower(via, last_feed_id(engine), db_timeout=2)
    got: list[int] = []

    async def apply(events) -> None:
        got.extend(e.post_id for e in events)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(follow_feed(follower, 0.05, stop, apply))
        store(engine, ("before", 1, 0))
        while got != [1]:
            await asyncio.sleep(0.05)
        proxy.sever()
        store(engine, ("during-1", 2, 0), ("during-2", 3, 0))
        await asyncio.sleep(0.5)  # several polls fail meanwhile
        assert got == [1]
        proxy.restore()
        store(engine, ("after", 4, 0))
        while len(got) < 4:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        stop.set()
        await task

    try:
        asyncio.run(asyncio.wait_for(scenario(), 30))
        assert got == [1, 2, 3, 4]
    finally:
        proxy.sever()
        via.dispose()
        engine.dispose()
