"""`gateway.online.OnlineState` against the shared Redis: replicas take each stored event once,
whatever History they started from, and see it only from its timestamp on."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from feedlab.gateway.metrics import GatewayMetrics
from feedlab.gateway.online import OnlineState, last_entry
from feedlab.gateway.state import GatewayState
from feedlab.models.base import Event
from feedlab.models.history import History

from tests.support.gateway import Clock, TcpProxy, seeded_gateway
from tests.support.redis import RedisSpace, upstream_of

pytestmark = pytest.mark.redis

T = datetime(2024, 3, 1, 12)
BASE = [Event(T - timedelta(hours=h), 1 + h % 3, 10 + h % 4, "view") for h in range(1, 9)]
ONLINE = [Event(T, 1, 11, "like"), Event(T + timedelta(minutes=5), 2, 12, "like")]


def replica(
    space: RedisSpace, events: list[Event], from_database: bool = True
) -> tuple[OnlineState, History]:
    """A replica's online state and History; `from_database`: the History was read from the
    database just after the stream's current last entry (else from an older snapshot)."""
    metrics = GatewayMetrics()
    after = last_entry(space.url, space.prefix, 1.0, metrics) if from_database else None
    online = OnlineState(space.url, space.prefix, metrics, after=after)
    return online, History.from_events(events)


def sync_errors(metrics: GatewayMetrics) -> float:
    return metrics.registry.get_sample_value("feedlab_redis_errors_total", {"op": "sync"}) or 0


def likes(history: History, at: datetime) -> dict[int, int]:
    _, liked = history.post_counts(at)
    return dict(zip(history.posts.ids.tolist(), liked.tolist(), strict=True))


def test_every_replica_takes_each_event_once_from_any_start(redis_space: RedisSpace):
    async def scenario() -> None:
        a, a_hist = replica(redis_space, BASE)
        b, b_hist = replica(redis_space, BASE)
        await a.publish(ONLINE, a_hist)
        await b.sync(b_hist)
        await a.sync(a_hist)
        await b.sync(b_hist)
        for hist in (a_hist, b_hist):
            assert len(hist) == len(BASE) + 2
            assert hist.liked_before(1, T + timedelta(seconds=1)).tolist() == [11]
            # point in time: a like is not seen before its own timestamp
            assert hist.liked_before(1, T).tolist() == []
            assert likes(hist, T + timedelta(minutes=5))[12] == 0
            assert likes(hist, T + timedelta(hours=1))[12] == 1
        # a replica started from the database after the events were appended: they are in
        # its History already, and the stream is read on from its last entry
        c, c_hist = replica(redis_space, BASE + ONLINE)
        await c.sync(c_hist)
        assert len(c_hist) == len(BASE) + 2
        # a replica started from an older local snapshot (holding one of the two events)
        # reads the retained stream and takes only what it lacks
        d, d_hist = replica(redis_space, [*BASE, ONLINE[0]], from_database=False)
        await d.sync(d_hist)
        assert len(d_hist) == len(BASE) + 2
        assert np.array_equal(d_hist.liked_before(2, T + timedelta(hours=1)), [12])
        for state in (a, b, c, d):
            assert state.up
            assert sync_errors(state.metrics) == 0
            await state.aclose()

    asyncio.run(scenario())


def test_a_hung_redis_costs_one_bounded_call_then_is_left_alone_until_retry(
    redis_space: RedisSpace,
):
    """Redis that accepts connections and never answers (a stopped process): one call gives
    up after its timeout, the next ones do not try until the retry interval has passed, and
    a stored event is kept to be appended once Redis answers again."""
    proxy = TcpProxy(upstream_of(redis_space.url))
    url = f"redis://127.0.0.1:{proxy.port}/{redis_space.url.rsplit('/', 1)[1]}"
    clock = Clock()
    metrics = GatewayMetrics()
    after = last_entry(url, redis_space.prefix, 1.0, metrics)
    online = OnlineState(url, redis_space.prefix, metrics, 0.1, 5.0, after=after, clock=clock)
    hist = History.from_events(BASE)

    async def scenario() -> None:
        await asyncio.wait_for(online.sync(hist), 10)
        assert online.up
        proxy.hang()
        # five requests at once: bounded, none raises, and only the first one waits for
        # Redis (the others find it down when their turn comes)
        await asyncio.wait_for(asyncio.gather(*(online.sync(hist) for _ in range(5))), 10)
        assert not online.up
        assert sync_errors(metrics) == 1
        await online.publish(ONLINE[:1], hist)  # not tried: applied here, kept
        assert online.pending == 1
        assert hist.liked_before(1, T + timedelta(seconds=1)).tolist() == [11]
        await asyncio.wait_for(online.sync(hist), 10)
        assert sync_errors(metrics) == 1  # within the retry interval: Redis not asked
        proxy.sever()  # drop the wedged connection; new ones go through
        proxy.restore()
        clock.now += 5.0
        await asyncio.wait_for(online.sync(hist), 10)
        assert online.up
        assert online.pending == 0
        assert len(hist) == len(BASE) + 1  # taken back from the stream, not twice
        await online.aclose()

    try:
        asyncio.run(scenario())
    finally:
        proxy.close()


def test_with_redis_the_feed_table_is_not_polled(redis_space: RedisSpace, tmp_path: Path):
    """`feedlab serve --workers N` sets a feed poll; with Redis the stream replaces it."""
    url = f"sqlite:///{tmp_path / 'feedlab.db'}"
    redis_settings = {"redis_url": redis_space.url, "redis_prefix": redis_space.prefix}
    engine, settings = seeded_gateway(url, tmp_path, feed_sync_interval=0.1, **redis_settings)
    state = GatewayState.load(settings)
    try:
        assert state.follower is None
        assert state.online is not None and state.online.up
        without = GatewayState.load(settings.model_copy(update={"redis_url": None}))
        assert without.follower is not None and without.online is None
        without.engine.dispose()
    finally:
        state.engine.dispose()
        engine.dispose()
