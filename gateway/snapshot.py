"""What the gateway loads at start-up (posts, user ids, feed history), and its shared snapshot.

The feed history is served from a snapshot folder of `.npy` files (the History's consolidated
store and id indexes, `History.save`) that every worker maps read-only, so the workers of a
machine share its pages instead of each holding a copy. A start with the database maps the
snapshot when it still matches the database, else builds it first (one process at a time:
the others wait on the lock, then map what it wrote); the feed rows stored after it are read
into the History's in-memory part, and posts and users come from the database. The snapshot is
rebuilt when missing or unreadable, when the database's row at its last id differs (another or
a reset database), or when the rows after it exceed `REBUILD_SHARE` of its rows (they cost
private memory in every worker); `feedlab snapshot build` builds it ahead of a start.

Each start with the database also writes `start.npz` beside it (the rows after the snapshot,
the posts and users, atomically), so a later start while the database is down serves what the
last start saw (`StartData.load`): responses come from that history, exposures go to the
spool and are replayed when the database returns.

Folder layout: `v-<last id>-<nonce>/` (one per build), `current` (a symlink to the one in
force, replaced atomically), `.lock`, `start.npz`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from feedlab.gateway.feed_sync import last_feed_id
from feedlab.models.catalog import PostCatalog
from feedlab.models.history import History, read_feed
from feedlab.storage.schema import feed, users
from sqlalchemy import Engine, func, select

log = logging.getLogger("feedlab.gateway")

FORMAT = 2
REBUILD_SHARE = 0.1
"""Rebuild the snapshot when the rows stored after it exceed this share of its rows."""
TAIL = ("ts_us", "user_ids", "post_ids", "is_like")


@dataclass
class StartData:
    posts: PostCatalog
    history: History
    known_users: set[int]
    through_id: int
    """The highest feed row id the history includes (where a feed follower starts)."""
    tail: dict[str, np.ndarray] = field(default_factory=dict)
    """The feed rows after the mapped snapshot (TAIL arrays), kept for `start.npz`."""
    version: str = ""
    """The snapshot folder the history maps ("": none)."""
    last_row: list[int] | None = None
    """The snapshot's last feed row (see `last_row`)."""

    @classmethod
    def from_engine(cls, engine: Engine) -> StartData:
        """Everything read from the database (the feed streamed, nothing mapped)."""
        through_id = last_feed_id(engine)
        posts = PostCatalog.from_engine(engine)
        history = History.from_engine(engine, through_id=through_id)
        return cls(posts, history, known_user_ids(engine), through_id)

    @classmethod
    def from_database(cls, engine: Engine, folder: Path) -> StartData:
        """The snapshot in `folder` (built first if it does not match the database), the feed
        rows after it, posts and users from the database. A folder that cannot be written
        only costs the sharing: the history is then read into memory."""
        try:
            with locked(folder):
                data = open_current(folder)
                if data is None or not matches(data, engine):
                    build(engine, folder)
                    data = open_current(folder)
        except OSError as exc:
            log.warning("snapshot %s unusable (%s): reading the history into memory", folder, exc)
            data = None
        if data is None:
            return cls.from_engine(engine)
        last = last_feed_id(engine)
        total, chunks = read_feed(engine, through_id=last, after_id=data.through_id)
        pieces = []
        for arrays in chunks:
            data.history.extend(*arrays)
            pieces.append(arrays)
        empty = (np.empty(0, np.int64),) * 3 + (np.empty(0, bool),)
        data.tail = {
            key: np.concatenate([empty[i], *(piece[i] for piece in pieces)])
            for i, key in enumerate(TAIL)
        }
        data.posts = PostCatalog.from_engine(engine)
        data.known_users = known_user_ids(engine)
        data.through_id = last
        log.info("snapshot %s mapped, %d feed rows after it read", data.version, total)
        try:
            data.save_start(folder)
        except OSError as exc:  # serving does not need it; a start without the database might
            log.warning("could not write %s: %s", folder / "start.npz", exc)
        return data

    def save_start(self, folder: Path) -> None:
        """Write `start.npz` (what this start adds to the snapshot), atomically."""
        meta = {
            "format": FORMAT,
            "version": self.version,
            "through_id": self.through_id,
            "texts": self.posts.texts,
            "topics": self.posts.topics,
        }
        arrays = {
            "meta": np.frombuffer(orjson.dumps(meta), np.uint8),
            "catalog_post_ids": self.posts.post_ids,
            "known_users": np.fromiter(self.known_users, np.int64, len(self.known_users)),
            **self.tail,
        }
        path = folder / "start.npz"
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # workers write side by side
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, folder: Path) -> StartData:
        """The snapshot in `folder` plus what the last start with the database added to it
        (`start.npz`); raises OSError / ValueError if there is no readable snapshot."""
        with locked(folder):
            data = open_current(folder)
        if data is None:
            raise ValueError(f"{folder}: no readable snapshot")
        start = folder / "start.npz"
        if start.is_file():
            with np.load(start, allow_pickle=False) as z:
                meta = orjson.loads(z["meta"].tobytes())
                if meta.get("format") == FORMAT and meta.get("version") == data.version:
                    data.history.extend(*(z[k] for k in TAIL))
                    data.posts = PostCatalog(z["catalog_post_ids"], meta["texts"], meta["topics"])
                    data.known_users = {int(u) for u in z["known_users"]}
                    data.through_id = int(meta["through_id"])
        return data


def known_user_ids(engine: Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(select(users.c.user_id)).scalars())


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold `folder/.lock` (created with the folder): one process checks or builds at once."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(engine: Engine, folder: Path) -> Path:
    """Write a snapshot of the database into `folder` and make it current (hold `locked`).
    Written into a temporary folder, fsynced and renamed, then `current` is switched
    atomically; older versions are removed (processes mapping them keep their pages)."""
    data = StartData.from_engine(engine)
    meta = {
        "format": FORMAT,
        "through_id": data.through_id,
        "last_row": last_row(engine, data.through_id),
        "events": len(data.history),
        "texts": data.posts.texts,
        "topics": data.posts.topics,
    }
    name = f"v-{data.through_id}-{uuid.uuid4().hex[:8]}"
    tmp = folder / f".{name}.tmp"
    tmp.mkdir()
    data.history.save(tmp)
    np.save(tmp / "catalog_post_ids.npy", data.posts.post_ids)
    np.save(tmp / "known_users.npy", np.fromiter(data.known_users, np.int64))
    (tmp / "meta.json").write_bytes(orjson.dumps(meta))
    del data
    for path in tmp.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    os.rename(tmp, folder / name)
    link = folder / f".current.{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(name)
    os.replace(link, folder / "current")
    for old in folder.glob("v-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    for stale in folder.glob(".v-*.tmp"):  # left by a build that was killed
        shutil.rmtree(stale, ignore_errors=True)
    return folder / name


def open_current(folder: Path) -> StartData | None:
    """The current snapshot, its history memory-mapped; None when missing or unreadable."""
    path = folder / "current"
    try:
        meta = orjson.loads((path / "meta.json").read_bytes())
        if meta.get("format") != FORMAT:
            raise ValueError(f"snapshot format {meta.get('format')!r} unknown")
        history = History.open(path)
        if len(history) != meta["events"]:
            raise ValueError(f"{len(history)} events, meta says {meta['events']}")
        posts = PostCatalog(np.load(path / "catalog_post_ids.npy"), meta["texts"], meta["topics"])
        known = {int(u) for u in np.load(path / "known_users.npy")}
    except (OSError, ValueError, KeyError) as exc:
        if path.exists() or path.is_symlink():
            log.warning("snapshot %s unreadable: %s", path, exc)
        return None
    through_id = int(meta["through_id"])
    return StartData(posts, history, known, through_id, {}, path.resolve().name, meta["last_row"])


def last_row(engine: Engine, row_id: int) -> list[int] | None:
    """(id, epoch µs, user, post, is_like) of the feed row `row_id`: what tells this
    database (and its state when the snapshot was built) from another."""
    if row_id <= 0:
        return None
    _, chunks = read_feed(engine, after_id=row_id - 1, through_id=row_id)
    for ts, u, p, like in chunks:
        if len(ts):
            return [row_id, int(ts[0]), int(u[0]), int(p[0]), int(like[0])]
    return None


def matches(data: StartData, engine: Engine) -> bool:
    """Whether the mapped snapshot may serve this database: its last row is the database's
    row of that id, and the rows after it are at most REBUILD_SHARE of its rows."""
    if data.last_row != last_row(engine, data.through_id):
        log.info("snapshot %s: the database differs at its last row, rebuilding", data.version)
        return False
    with engine.connect() as conn:
        after = conn.execute(
            select(func.count()).select_from(feed).where(feed.c.id > data.through_id)
        ).scalar_one()
    if after > REBUILD_SHARE * len(data.history):
        log.info("snapshot %s: %d rows after it, rebuilding", data.version, after)
        return False
    return True
