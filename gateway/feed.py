"""`POST /feed`: store views and likes once (by event id) and make them count immediately."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from feedlab.gateway.dbutil import bounded, insert_ignore
from feedlab.gateway.schemas import FeedEventIn
from feedlab.gateway.state import GatewayState
from feedlab.models.base import Event
from feedlab.storage.schema import feed
from sqlalchemy import Connection, Engine, select


class EventConflict(ValueError):
    """An `event_id` already used (stored, or earlier in the request) with other content."""


def store_events(engine: Engine, events: list[FeedEventIn], timeout: float) -> list[FeedEventIn]:
    """Insert the events not stored yet; return those that are new (in input order). A reused
    `event_id` with different content raises EventConflict and stores nothing."""
    unique: dict[str, FeedEventIn] = {}
    for e in events:
        first = unique.setdefault(e.key(), e)
        if first.content() != e.content():
            raise EventConflict(f"event_id {e.key()!r} appears twice with different content")
    rows = [
        {
            "event_id": key,
            "timestamp": e.timestamp,
            "user_id": e.user_id,
            "post_id": e.post_id,
            "action": e.action,
            "target": e.target,
        }
        for key, e in unique.items()
    ]
    with bounded(engine, timeout, begin=True) as conn:
        result = insert_ignore(conn, feed, rows, ["event_id"], returning=True)
        new_keys = {row[0] for row in result} if result is not None else set()
        old = [key for key in unique if key not in new_keys]
        if old:
            _check_same(conn, {key: unique[key] for key in old})
    return [e for key, e in unique.items() if key in new_keys]


def unknown_posts(
    events: list[FeedEventIn], known: Container[int], batch: bool
) -> list[dict[str, Any]]:
    """Validation errors (FastAPI's shape) for events whose post the gateway does not know:
    posts are loaded at start-up, so a post must be imported before the gateway starts."""
    return [
        {
            "loc": ("body", i, "post_id") if batch else ("body", "post_id"),
            "msg": f"unknown post {e.post_id}: import posts before starting the gateway",
            "type": "value_error",
            "input": e.post_id,
        }
        for i, e in enumerate(events)
        if e.post_id not in known
    ]


def _check_same(conn: Connection, events: dict[str, FeedEventIn]) -> None:
    """Raise EventConflict (rolling the request back) if a stored event differs."""
    f = feed.c
    query = select(f.event_id, f.timestamp, f.user_id, f.post_id, f.action, f.target).where(
        f.event_id.in_(list(events))
    )
    for key, *stored in conn.execute(query):
        if tuple(stored) != events[key].content():
            raise EventConflict(f"event_id {key!r} is already stored with different content")


async def apply_stored(state: GatewayState, new: list[FeedEventIn]) -> None:
    """Apply the events this worker just stored: through Redis when configured (every replica,
    this one included, takes them from there on its next request, see `gateway.online`), else
    those a sibling's rows did not bring in meanwhile (see `gateway.feed_sync`)."""
    if state.follower is not None:
        keys = [e.key() for e in new]
        fresh = state.follower.claim(keys)
        new = [e for e, key in zip(new, keys, strict=True) if key in fresh]
    events = [Event(e.timestamp, e.user_id, e.post_id, e.action) for e in new]
    if state.online is not None:
        await state.online.publish(events, state.history)
    else:
        await apply_events(state, events)


async def apply_events(state: GatewayState, events: list[Event]) -> None:
    """Put stored events into the shared History, so a like is excluded from the very next
    list (in-process models read it). Model services read the feed table themselves
    (`gateway.feed_sync`), so they get every stored event even if they were down."""
    if events:
        state.history.add(events)
