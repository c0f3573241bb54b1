"""Online state shared by gateway replicas through Redis (`FEEDLAB_REDIS_URL`).

Every feed event a replica stores (`POST /feed`) is appended to one Redis stream after the
database commit. Before each recommendation request a replica reads the stream past the last
entry it took (one `XRANGE`, usually empty) into its History, so a like posted to any replica
is excluded by every replica on its next request, and the feed table is not polled. A replica
holds no online state of its own: what it took from the stream is a cache that any replica
rebuilds at start (the database up to its start, then the stream), so replicas can come and
go behind a load balancer. Models keep reading the History's point-in-time queries: events
are stored with their timestamps, so a request at `t` sees only events before `t`.

The stream keeps `redis_retention` seconds of events (trimmed by entry time on each append)
and expires when nothing is appended for that long.

Redis down: every call is bounded by `redis_timeout`, after a failure Redis is not asked again
for `redis_retry_interval` (requests are served from the local History meanwhile: degraded,
shown by `/health` and the metrics), and events stored meanwhile are applied locally and
appended to the stream once Redis answers again; the stream is then read on from the last
entry taken.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import TypeVar

import numpy as np
from feedlab.gateway.metrics import GatewayMetrics
from feedlab.models.base import Event
from feedlab.models.history import History, from_us, to_us
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry as SyncRetry

log = logging.getLogger("feedlab.online")

T = TypeVar("T")

STREAM = "events"
READ_BATCH = 1000
"""Stream entries read per `XRANGE` (a replica catching up loops over batches)."""


class OnlineState:
    """The Redis side of one replica: appends stored events, brings its History up to date."""

    def __init__(
        self,
        url: str,
        prefix: str,
        metrics: GatewayMetrics,
        timeout: float = 0.25,
        retry_interval: float = 1.0,
        retention: float = 2 * 86400,
        after: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`after`: the stream's last entry before the History was read from the database
        (`last_entry`); None reads every retained entry, skipping those the History holds."""
        self.client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self.key = f"{prefix}{STREAM}"
        self.metrics = metrics
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.retention = retention
        self._clock = clock
        self._last = after
        self._pending: list[Event] = []
        self._lock = asyncio.Lock()
        self._down_until = 0.0
        self.up = after is not None
        metrics.watch_redis(lambda: self.up, lambda: self.pending)

    @property
    def pending(self) -> int:
        """Events stored while Redis was down, not yet appended to the stream."""
        return len(self._pending)

    async def publish(self, events: Sequence[Event], history: History) -> None:
        """Append events just stored in the database; while Redis is down, apply them to the
        local History and keep them to append later (the next `sync` does it)."""
        if not events:
            return
        if self._due():
            async with self._lock:
                appended = None
                if self._due():  # the call this request waited for may just have failed
                    appended = await self._call("publish", self._append(events))
                if appended is not None:
                    return
        history.add(events)
        self._pending.extend(events)

    async def sync(self, history: History) -> None:
        """Take the stream entries appended since the last one taken into `history` (first
        appending the events kept while Redis was down). Never raises: on a Redis error the
        request is served from what the History holds."""
        if not self._due():
            return
        async with self._lock:
            if not self._due():  # the call this request waited for failed: do not queue more
                return
            if self._pending:
                pending = list(self._pending)
                if await self._call("publish", self._append(pending)) is None:
                    return
                del self._pending[: len(pending)]
            while True:
                low = "-" if self._last is None else f"({self._last}"
                read = self.client.xrange(self.key, min=low, count=READ_BATCH)
                entries = await self._call("sync", read)
                if entries is None:
                    return
                if entries:
                    _take(history, [_event(fields) for _, fields in entries])
                    self._last = _text(entries[-1][0])
                if len(entries) < READ_BATCH:
                    return

    async def _append(self, events: Sequence[Event]) -> int:
        """Append `events` to the stream (trimming entries older than the retention)."""
        oldest_ms = int((time.time() - self.retention) * 1000)
        async with self.client.pipeline(transaction=False) as pipe:
            for e in events:
                fields = {"t": to_us(e.timestamp), "u": e.user_id, "p": e.post_id, "a": e.action}
                pipe.xadd(self.key, fields, minid=oldest_ms)  # type: ignore[arg-type]
            pipe.expire(self.key, timedelta(seconds=self.retention))
            await pipe.execute()
        return len(events)

    async def _call(self, op: str, call: Awaitable[T]) -> T | None:
        """`call`'s result, or None after a Redis error or a timeout (counted, logged once per
        outage; Redis is left alone for `retry_interval`)."""
        try:
            result = await asyncio.wait_for(call, self.timeout * 2)
        except (RedisError, OSError, TimeoutError) as exc:
            self.metrics.redis_errors.labels(op).inc()
            if self.up or self._down_until == 0.0:
                log.warning("redis unavailable (%s: %s): serving from local state", op, exc)
            self.up = False
            self._down_until = self._clock() + self.retry_interval
            return None
        if not self.up:
            log.info("redis available")
        self.up = True
        return result

    def _due(self) -> bool:
        return self.up or self._clock() >= self._down_until

    async def aclose(self) -> None:
        await self.client.aclose()


def last_entry(url: str, prefix: str, timeout: float, metrics: GatewayMetrics) -> str | None:
    """The id of the stream's last entry ("0-0" when there is none), read before the History
    is read from the database: every entry up to it is in there, since an event is appended
    after its commit. None when Redis does not answer (counted as a `start` error)."""
    client = SyncRedis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=SyncRetry(NoBackoff(), 0)
    )
    try:
        entries = client.xrevrange(f"{prefix}{STREAM}", count=1)
    except RedisError as exc:
        metrics.redis_errors.labels("start").inc()
        log.warning("redis unavailable at start (%s): reading its whole stream later", exc)
        return None
    finally:
        client.close()
    return _text(entries[0][0]) if entries else "0-0"


def _text(raw: bytes | str | None) -> str:
    """A reply as text (the client returns bytes: `decode_responses` is off)."""
    if raw is None:
        raise ValueError("empty reply from Redis")
    return raw.decode() if isinstance(raw, bytes) else raw


def _event(fields: Mapping[bytes | str, bytes | str] | None) -> Event:
    """The event of a stream entry."""
    if fields is None:
        raise ValueError("stream entry without fields")
    values = {_text(k): _text(v) for k, v in fields.items()}
    return Event(from_us(int(values["t"])), int(values["u"]), int(values["p"]), values["a"])


def _take(history: History, events: list[Event]) -> None:
    """Add the events `history` does not hold yet: one with the same user, time, post and
    action is the same event (read from the database at start, or applied locally while Redis
    was down and appended since)."""
    fresh: dict[Event, None] = {}
    for e in events:
        ts, posts, like = history.user_events_before(e.user_id, e.timestamp + timedelta(0, 0, 1))
        same = (ts == to_us(e.timestamp)) & (posts == e.post_id) & (like == (e.action == "like"))
        if not np.any(same):
            fresh[e] = None
    history.add(fresh)
