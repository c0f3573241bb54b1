"""Writes an in-memory test world (catalog + History) into a database, for tests of commands
that read their data from one (e.g. `feedlab train`)."""

from __future__ import annotations

from collections.abc import Iterable

from feedlab.models.catalog import PostCatalog
from feedlab.models.history import History, from_us
from feedlab.storage.schema import feed, posts, users
from sqlalchemy import Engine, insert


def store(
    engine: Engine, catalog: PostCatalog, history: History, user_ids: Iterable[int] = ()
) -> None:
    """Insert the catalog's posts, every event of `history` and users `user_ids` (age 30)."""
    ev = history.events_between(None, None)
    with engine.begin() as conn:
        conn.execute(
            insert(posts),
            [
                {"post_id": int(p), "text": t, "topic": c}
                for p, t, c in zip(catalog.post_ids, catalog.texts, catalog.topics, strict=True)
            ],
        )
        people = [{"user_id": int(u), "age": 30} for u in user_ids]
        if people:
            conn.execute(insert(users), people)
        conn.execute(
            insert(feed),
            [
                {
                    "timestamp": from_us(int(ts)),
                    "user_id": int(u),
                    "post_id": int(p),
                    "action": "like" if like else "view",
                }
                for ts, u, p, like in zip(ev.ts, ev.user_ids, ev.post_ids, ev.is_like, strict=True)
            ],
        )
