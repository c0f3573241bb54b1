"""Follows the `feed` table: every committed row is seen once, also rows that commit late.

With `feedlab serve --workers N` every worker process holds its own History, and a
`POST /feed` lands on one of them; model services (`feedlab serve-model`) hold theirs too.
Each polls the `feed` table for rows it has not applied yet, so a like posted to any worker
counts everywhere within one poll interval. The table is the source of truth: a follower that
was down catches up from where it stopped.

PostgreSQL may commit a lower id after a higher one (concurrent transactions), and ids are
also burnt for good (a rolled back insert, an `ON CONFLICT DO NOTHING` duplicate). So an id
missing below the highest one seen is a *gap*, re-queried on each poll until its row appears
or `gap_timeout` passes; the gateway's own writers are bounded by its statement timeout, far
below the default 60 s, so no row they commit is skipped. Rows are applied once by event key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from feedlab.gateway.dbutil import bounded
from feedlab.models.base import Event
from feedlab.storage.schema import feed
from sqlalchemy import Engine, Row, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("feedlab.feed_sync")

MAX_GAP_RANGES = 64
"""More open gaps than this are queried as one id range (re-read rows are skipped by key)."""


def last_feed_id(engine: Engine) -> int:
    """The highest feed row id now (0 for an empty table): where a follower starts."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.max(feed.c.id))).scalar_one() or 0)


class FeedFollower:
    """The feed rows stored after `after_id` that this process has not applied yet, each once.

    `fetch` only queries (run it in a thread); `take` and `claim` keep the applied set and
    must run on one thread (the event loop), so a row stored by this worker's own
    `POST /feed` is applied once whichever path sees it first."""

    def __init__(
        self,
        engine: Engine,
        after_id: int,
        db_timeout: float = 5.0,
        gap_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.db_timeout = db_timeout
        self.gap_timeout = gap_timeout
        self._clock = clock
        self._top = after_id  # highest id seen
        self._gaps: list[tuple[int, int, float]] = []  # (lo, hi, first missed) ids not seen
        self._applied: dict[str, float] = {}  # event key -> when applied

    def claim(self, keys: list[str]) -> set[str]:
        """Of the events this worker just stored, those not applied yet (now marked)."""
        now = self._clock()
        fresh = {k for k in keys if k not in self._applied}
        for key in fresh:
            self._applied[key] = now
        return fresh

    def fetch(self) -> list[Row[*tuple[Any, ...]]]:
        """Rows above the highest id seen, and rows filling the open gaps, in id order."""
        f = feed.c
        wanted = [f.id > self._top, *(f.id.between(lo, hi) for lo, hi, _ in self._gaps)]
        query = (
            select(f.id, f.event_id, f.timestamp, f.user_id, f.post_id, f.action)
            .where(or_(*wanted))
            .order_by(f.id)
        )
        with bounded(self.engine, self.db_timeout) as conn:
            return list(conn.execute(query).all())

    def take(self, rows: list[Row[*tuple[Any, ...]]]) -> list[Event]:
        """The events of `rows` not applied yet (now marked); updates the gaps."""
        now = self._clock()
        events = []
        for row in rows:
            key = row.event_id or f"id:{row.id}"
            if key not in self._applied:
                self._applied[key] = now
                events.append(Event(row.timestamp, row.user_id, row.post_id, row.action))
        self._track(sorted(row.id for row in rows), now)
        horizon = now - 2 * self.gap_timeout  # longer than any gap stays open
        self._applied = {k: t for k, t in self._applied.items() if t > horizon}
        return events

    def _track(self, ids: list[int], now: float) -> None:
        gaps = []
        for lo, hi, since in self._gaps:
            if now - since > self.gap_timeout:
                continue  # burnt ids, or a transaction longer than any writer's bound
            start = lo
            for i in ids:
                if start <= i <= hi:
                    if i > start:
                        gaps.append((start, i - 1, since))
                    start = i + 1
            if start <= hi:
                gaps.append((start, hi, since))
        expected = self._top + 1
        for i in ids:
            if i > self._top:
                if i > expected:
                    gaps.append((expected, i - 1, now))
                expected = i + 1
        self._top = max(self._top, expected - 1)
        gaps.sort()
        if len(gaps) > MAX_GAP_RANGES:
            gaps = [(gaps[0][0], gaps[-1][1], min(g[2] for g in gaps))]
        self._gaps = gaps


async def follow_feed(
    follower: FeedFollower,
    interval: float,
    stop: asyncio.Event,
    apply: Callable[[list[Event]], Awaitable[None]],
) -> None:
    """Poll every `interval` seconds and `apply` the new events, until `stop`; a database
    error is retried at the next poll (nothing is skipped meanwhile)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        try:
            rows = await asyncio.to_thread(follower.fetch)
        except SQLAlchemyError as exc:
            log.warning("feed sync: database error, retrying: %s", exc)
            continue
        events = follower.take(rows)
        if events:
            await apply(events)
