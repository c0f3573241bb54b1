"""`POST /feed`: store views and likes once (by event id) and make them count immediately."""

from __future__ import annotations

import asyncio
from collections.abc import Container
from typing import Any

from feedlab.gateway.backends import HttpBackend
from feedlab.gateway.dbutil import insert_ignore
from feedlab.gateway.schemas import FeedEventIn
from feedlab.gateway.state import GatewayState
from feedlab.models.base import Event
from feedlab.storage.schema import feed
from sqlalchemy import Engine


def store_events(engine: Engine, events: list[FeedEventIn]) -> list[FeedEventIn]:
    """Insert the events not stored yet; return those that are new (in input order)."""
    unique: dict[str, FeedEventIn] = {}
    for e in events:
        unique.setdefault(e.key(), e)
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
    with engine.begin() as conn:
        result = insert_ignore(conn, feed, rows, ["event_id"], returning=True)
        new_keys = {row[0] for row in result} if result is not None else set()
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


_forwarding: set[asyncio.Task[None]] = set()


async def apply_stored(state: GatewayState, new: list[FeedEventIn]) -> None:
    """Apply the events this worker just stored (those a sibling's rows did not bring in
    meanwhile, see `gateway.feed_sync`)."""
    if state.follower is not None:
        keys = [e.key() for e in new]
        fresh = state.follower.claim(keys)
        new = [e for e, key in zip(new, keys, strict=True) if key in fresh]
    await apply_events(state, [Event(e.timestamp, e.user_id, e.post_id, e.action) for e in new])


async def apply_events(state: GatewayState, events: list[Event]) -> None:
    """Put stored events into the shared History (so a like is excluded from the very next
    list; in-process models read it) and forward them to model services (which own their
    History)."""
    if not events:
        return
    state.history.add(events)
    runtime = state.holder.current
    backends = {id(b): b for b in (state.popular, *runtime.backends.values())}
    for backend in backends.values():
        if isinstance(backend, HttpBackend):
            task = asyncio.create_task(backend.forward(events))
            _forwarding.add(task)
            task.add_done_callback(_forwarding.discard)
