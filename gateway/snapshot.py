"""What the gateway loads at start-up (posts, user ids, feed history), and a local copy of it.

Each start that reads the database writes the copy (`StartData.save`, atomically), so a later
start while the database is down can serve from it (`StartData.load`): responses come from
that history, exposures go to the spool and are replayed when the database returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from feedlab.gateway.feed_sync import last_feed_id
from feedlab.models.catalog import PostCatalog
from feedlab.models.history import History
from feedlab.storage.schema import users
from sqlalchemy import Engine, select

FORMAT = 1


@dataclass
class StartData:
    posts: PostCatalog
    history: History
    known_users: set[int]
    through_id: int
    """The highest feed row id the history includes (where a feed follower starts)."""

    @classmethod
    def from_engine(cls, engine: Engine) -> StartData:
        through_id = last_feed_id(engine)
        posts = PostCatalog.from_engine(engine)
        history = History.from_engine(engine, through_id=through_id)
        with engine.connect() as conn:
            known = set(conn.execute(select(users.c.user_id)).scalars())
        return cls(posts, history, known, through_id)

    def save(self, path: Path) -> None:
        """Write the copy to `path` (a temporary file renamed over it, fsynced)."""
        ev = self.history.events_between(None, None)
        meta = {
            "format": FORMAT,
            "texts": self.posts.texts,
            "topics": self.posts.topics,
            "through_id": self.through_id,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # workers write side by side
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                meta=np.frombuffer(orjson.dumps(meta), np.uint8),
                post_ids=self.posts.post_ids,
                known_users=np.fromiter(self.known_users, np.int64, len(self.known_users)),
                ts_us=ev.ts,
                user_ids=ev.user_ids,
                post_ids_feed=ev.post_ids,
                is_like=ev.is_like,
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> StartData:
        """The copy at `path`; raises OSError / ValueError if it is missing or unreadable."""
        with np.load(path, allow_pickle=False) as z:
            meta = orjson.loads(z["meta"].tobytes())
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: snapshot format {meta.get('format')!r} unknown")
            posts = PostCatalog(z["post_ids"], meta["texts"], meta["topics"])
            history = History.from_arrays(
                z["ts_us"].astype("datetime64[us]"),
                z["user_ids"],
                z["post_ids_feed"],
                z["is_like"],
            )
            known = {int(u) for u in z["known_users"]}
        return cls(posts, history, known, int(meta["through_id"]))
