"""Keeps one gateway worker's History in step with the events its sibling workers store.

With `feedlab serve --workers N` every worker process holds its own History, and a
`POST /feed` lands on one of them. Each worker polls the `feed` table for rows it has not
applied yet, so a like posted to any worker counts on all of them within one poll interval.
PostgreSQL may commit a lower id after a higher one, so each poll re-reads the ids of the last
few polls and skips the rows already applied (by `event_id`).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from feedlab.models.base import Event
from feedlab.storage.schema import feed
from sqlalchemy import Engine, Row, func, select


def last_feed_id(engine: Engine) -> int:
    """The highest feed row id now (0 for an empty table): where a follower starts."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.max(feed.c.id))).scalar_one() or 0)


class FeedFollower:
    """The feed rows stored after `after_id` that this worker has not applied yet, each once.

    `fetch` only queries (run it in a thread); `take` and `claim` keep the applied set and
    must run on the event loop thread, so a row stored by this worker's own `POST /feed` is
    applied once whichever path sees it first."""

    def __init__(self, engine: Engine, after_id: int, rewind_polls: int = 10) -> None:
        self.engine = engine
        self._floor = after_id  # every row with id <= floor has been applied
        self._tops: deque[int] = deque([after_id], maxlen=rewind_polls)
        self._polls = 0
        self._applied: dict[str, int] = {}  # event key -> poll count when applied

    def claim(self, keys: list[str]) -> set[str]:
        """Of the events this worker just stored, those not applied yet (now marked)."""
        fresh = {k for k in keys if k not in self._applied}
        for key in fresh:
            self._applied[key] = self._polls
        return fresh

    def fetch(self) -> list[Row[*tuple[Any, ...]]]:
        """Rows above the floor, in id order."""
        f = feed.c
        query = (
            select(f.id, f.event_id, f.timestamp, f.user_id, f.post_id, f.action)
            .where(f.id > self._floor)
            .order_by(f.id)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def take(self, rows: list[Row[*tuple[Any, ...]]]) -> list[Event]:
        """The events of `rows` not applied yet (now marked); advances the floor."""
        self._polls += 1
        events = []
        for row in rows:
            key = row.event_id or f"id:{row.id}"
            if key not in self._applied:
                self._applied[key] = self._polls
                events.append(Event(row.timestamp, row.user_id, row.post_id, row.action))
        self._tops.append(max(self._tops[-1], rows[-1].id if rows else 0))
        if len(self._tops) == self._tops.maxlen:
            # a row below the top seen `rewind_polls` polls ago has committed by now
            self._floor = self._tops[0]
            oldest = self._polls - self._tops.maxlen
            self._applied = {k: n for k, n in self._applied.items() if n > oldest}
        return events
