"""`gateway.online.OnlineState` against the shared Redis: replicas take each stored event once,
whatever History they started from, and see it only from its timestamp on."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import numpy as np
import pytest
from feedlab.gateway.metrics import GatewayMetrics
from feedlab.gateway.online import OnlineState
from feedlab.models.base import Event
from feedlab.models.history import History

from tests.support.redis import RedisSpace

pytestmark = pytest.mark.redis

T = datetime(2024, 3, 1, 12)
BASE = [Event(T - timedelta(hours=h), 1 + h % 3, 10 + h % 4, "view") for h in range(1, 9)]
ONLINE = [Event(T, 1, 11, "like"), Event(T + timedelta(minutes=5), 2, 12, "like")]


def replica(space: RedisSpace, events: list[Event]) -> tuple[OnlineState, History]:
    return OnlineState(space.url, space.prefix, GatewayMetrics()), History.from_events(events)


def likes(history: History, at: datetime) -> dict[int, int]:
    _, liked = history.post_counts(at)
    return dict(zip(history.posts.ids.tolist(), liked.tolist(), strict=True))


def test_every_replica_takes_each_event_once_from_any_start(redis_space: RedisSpace):
    async def scenario() -> None:
        a, a_hist = replica(redis_space, BASE)
        b, b_hist = replica(redis_space, BASE)
        await a.start(from_database=True)
        await b.start(from_database=True)
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
        await c.start(from_database=True)
        await c.sync(c_hist)
        assert len(c_hist) == len(BASE) + 2
        # a replica started from an older local snapshot (holding one of the two events)
        # reads the retained stream and takes only what it lacks
        d, d_hist = replica(redis_space, [*BASE, ONLINE[0]])
        await d.start(from_database=False)
        await d.sync(d_hist)
        assert len(d_hist) == len(BASE) + 2
        assert np.array_equal(d_hist.liked_before(2, T + timedelta(hours=1)), [12])
        for state in (a, b, c, d):
            assert state.up
            await state.aclose()

    asyncio.run(scenario())
