"""Point-in-time store of feed events: answers "what did we know at time t" and nothing more.

Every query takes `at` and sees only events with `timestamp < at` (strictly), however late they
were added. Events live in a consolidated, time-sorted numpy store plus a small delta of events
added online (in any order, appended to growable arrays); the delta is folded in once it grows,
so `add` stays cheap and queries stay exact. Per-post counts before t come from cumulative
checkpoints every C events plus a `bincount` of at most C events, so popularity at any t costs
microseconds, not a scan.
Times are int64 microseconds since the Unix epoch (naive UTC) internally.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
from feedlab.models.base import Event
from feedlab.storage.clock import naive_utc

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix
    from sqlalchemy import Engine

_EPOCH = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
ACTIONS = ("view", "like")


def to_us(at: datetime) -> int:
    """Microseconds since the epoch of a datetime (tz-aware input is converted to naive UTC)."""
    return (naive_utc(at) - _EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    """The naive UTC datetime of an epoch-microsecond value."""
    return _EPOCH + timedelta(microseconds=int(us))


def to_us_array(ts: Sequence | np.ndarray) -> np.ndarray:
    """Epoch microseconds of datetimes, datetime64 values or pandas timestamps; integers are
    taken as Unix seconds (the MovieLens convention)."""
    arr = np.asarray(ts)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[us]").astype(np.int64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64) * 1_000_000
    if arr.dtype.kind == "f":
        return np.round(arr.astype(np.float64) * 1_000_000).astype(np.int64)
    return np.fromiter((to_us(_as_datetime(x)) for x in arr.ravel()), np.int64, arr.size)


def _as_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, np.datetime64):
        return from_us(int(value.astype("datetime64[us]").astype(np.int64)))
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    raise TypeError(f"timestamp: expected a datetime, got {type(value).__name__}: {value!r}")


def _is_like(actions: Sequence | np.ndarray) -> np.ndarray:
    arr = np.asarray(actions)
    if arr.dtype == bool:
        return arr
    like = arr == "like"
    bad = ~(like | (arr == "view"))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"action: expected 'view' or 'like' at row {i}, got {arr[i]!r}")
    return like


class IdIndex:
    """Dense positions 0..n-1 for arbitrary int ids, in first-seen order; grows, never reorders."""

    def __init__(self) -> None:
        self._ids = np.empty(0, np.int64)
        self._pos: dict[int, int] = {}
        self._sorted: tuple[np.ndarray | None, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> np.ndarray:
        """Ids by position."""
        return self._ids

    def get(self, id_: int) -> int:
        """Position of one id, -1 if unknown."""
        return self._pos.get(int(id_), -1)

    def add(self, ids: np.ndarray) -> np.ndarray:
        """Positions of `ids`, registering the unknown ones."""
        ids = np.asarray(ids, np.int64)
        uniq, first = np.unique(ids, return_index=True)
        new = np.array([i not in self._pos for i in uniq.tolist()], bool)
        if new.any():
            fresh = uniq[new][np.argsort(first[new], kind="stable")]
            start = len(self._ids)
            self._pos.update(zip(fresh.tolist(), range(start, start + len(fresh)), strict=True))
            self._ids = np.concatenate([self._ids, fresh])
            self._sorted = None
        return self.lookup(ids)

    def lookup(self, ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """Positions of `ids` (vectorised), -1 for unknown ids."""
        ids = np.asarray(ids, np.int64)
        if self._sorted is None:
            self._sorted = self._lookup_table()
        keys, order = self._sorted
        if keys is None:  # dense table: `order[id]` is the position
            inside = (ids >= 0) & (ids < len(order))
            return np.where(inside, order[np.where(inside, ids, 0)], -1)
        if len(keys) == 0:
            return np.full(ids.shape, -1, np.int64)
        at = np.searchsorted(keys, ids).clip(0, len(keys) - 1)
        return np.where(keys[at] == ids, order[at], -1)

    def _lookup_table(self) -> tuple[np.ndarray | None, np.ndarray]:
        """A dense id → position array when ids are small non-negative ints (the usual case:
        requests look up many ids, and indexing beats a binary search); else sorted keys."""
        ids = self._ids
        if len(ids) and ids.min() >= 0 and ids.max() < 4 * len(ids) + 1024:
            table = np.full(int(ids.max()) + 1, -1, np.int64)
            table[ids] = np.arange(len(ids))
            return None, table
        order = np.argsort(ids, kind="stable")
        return ids[order], order


@dataclass(frozen=True)
class EventArrays:
    """Events as parallel arrays with raw ids, sorted by time."""

    ts: np.ndarray  # int64 epoch microseconds
    user_ids: np.ndarray
    post_ids: np.ndarray
    is_like: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


class _Store:
    """An immutable, time-sorted block of events with per-user and per-post indexes."""

    def __init__(
        self,
        ts: np.ndarray,
        u: np.ndarray,
        p: np.ndarray,
        like: np.ndarray,
        n_users: int,
        n_posts: int,
    ) -> None:
        order = np.argsort(ts, kind="stable")
        self.ts, self.u, self.p, self.like = ts[order], u[order], p[order], like[order]
        self.n_posts = n_posts
        by_user = np.lexsort((self.ts, self.u))
        self.u_ts = self.ts[by_user]
        self.u_p = self.p[by_user]
        self.u_like = self.like[by_user]
        self.u_ptr = np.zeros(n_users + 1, np.int64)
        np.cumsum(np.bincount(self.u, minlength=n_users), out=self.u_ptr[1:])
        n = len(self.ts)
        self.step = max(4096, -(-n // 256))
        marks = np.arange(0, n + 1, self.step)
        self.ckpt = np.zeros((len(marks), 2, n_posts), np.int32)
        for k in range(1, len(marks)):
            lo, hi = marks[k - 1], marks[k]
            self.ckpt[k] = self.ckpt[k - 1] + self._counts(lo, hi, n_posts)

    def __len__(self) -> int:
        return len(self.ts)

    def _counts(self, lo: int, hi: int, n_posts: int) -> np.ndarray:
        p, like = self.p[lo:hi], self.like[lo:hi]
        return np.stack(
            [np.bincount(p[~like], minlength=n_posts), np.bincount(p[like], minlength=n_posts)]
        )

    def counts_before(self, at_us: int, n_posts: int) -> np.ndarray:
        """(2, n_posts) view and like counts of events before `at_us`."""
        pos = int(np.searchsorted(self.ts, at_us, "left"))
        k = pos // self.step
        out = np.zeros((2, n_posts), np.int64)
        out[:, : self.n_posts] = self.ckpt[k]
        out += self._counts(k * self.step, pos, n_posts)
        return out

    def user_slice(self, u: int, at_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if u >= len(self.u_ptr) - 1:
            return self.u_ts[:0], self.u_p[:0], self.u_like[:0]
        lo, hi = int(self.u_ptr[u]), int(self.u_ptr[u + 1])
        hi = lo + int(np.searchsorted(self.u_ts[lo:hi], at_us, "left"))
        return self.u_ts[lo:hi], self.u_p[lo:hi], self.u_like[lo:hi]


class _Delta:
    """Events added since the last consolidation, in arrival order, in growable arrays: an
    append writes one slot (capacity doubles when full), so `POST /feed` between requests
    never makes the next request rebuild the delta's arrays from scratch."""

    def __init__(self) -> None:
        self._n = 0
        self._ts = np.empty(0, np.int64)
        self._u = np.empty(0, np.int64)
        self._p = np.empty(0, np.int64)
        self._like = np.empty(0, bool)

    def __len__(self) -> int:
        return self._n

    def append(self, ts: int, u: int, p: int, like: bool) -> None:
        if self._n == len(self._ts):
            self._ts, self._u, self._p, self._like = (
                self._grown(a) for a in (self._ts, self._u, self._p, self._like)
            )
        i = self._n
        self._ts[i], self._u[i], self._p[i], self._like[i] = ts, u, p, like
        self._n += 1

    def _grown(self, a: np.ndarray) -> np.ndarray:
        out = np.empty(max(1024, 2 * self._n), a.dtype)
        out[: self._n] = a[: self._n]
        return out

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ts_us, user positions, post positions, is_like) views of the filled slots; later
        appends only write past them (or into new arrays), so a view never changes."""
        n = self._n
        return self._ts[:n], self._u[:n], self._p[:n], self._like[:n]


class History:
    """Feed events by time; every query is point-in-time (strictly before `at`).

    Thread-safe for one writer (`add`) and many readers: the gateway adds events from
    `POST /feed` while requests read.
    """

    DELTA_MIN = 20_000

    def __init__(self) -> None:
        self.users = IdIndex()
        self.posts = IdIndex()
        self._lock = threading.RLock()
        empty = np.empty(0, np.int64)
        self._store = _Store(empty, empty, empty, np.empty(0, bool), 0, 0)
        self._delta = _Delta()
        self._delta_by_user: dict[int, list[int]] = {}

    # construction -----------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls,
        ts: Sequence | np.ndarray,
        user_ids: Sequence[int] | np.ndarray,
        post_ids: Sequence[int] | np.ndarray,
        actions: Sequence[str] | np.ndarray,
    ) -> History:
        """From parallel arrays; `ts` as datetimes/datetime64 (or ints = Unix seconds),
        `actions` as 'view'/'like' strings or a boolean is-like array."""
        ts_us = to_us_array(ts)
        n = len(ts_us)
        for field, arr in (("user_ids", user_ids), ("post_ids", post_ids), ("actions", actions)):
            if len(arr) != n:
                raise ValueError(f"{field}: length {len(arr)} differs from ts length {n}")
        hist = cls()
        like = _is_like(actions)
        u = hist.users.add(np.asarray(user_ids, np.int64))
        p = hist.posts.add(np.asarray(post_ids, np.int64))
        hist._store = _Store(ts_us, u, p, like, len(hist.users), len(hist.posts))
        return hist

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> History:
        events = list(events)
        return cls.from_arrays(
            [e.timestamp for e in events],
            [e.user_id for e in events],
            [e.post_id for e in events],
            [e.action for e in events],
        )

    @classmethod
    def from_engine(
        cls, engine: Engine, until: datetime | None = None, through_id: int | None = None
    ) -> History:
        """From the `feed` table (only events before `until`, and only rows with
        id <= `through_id`, when given)."""
        from feedlab.storage.schema import feed
        from sqlalchemy import select

        query = select(feed.c.timestamp, feed.c.user_id, feed.c.post_id, feed.c.action)
        if until is not None:
            query = query.where(feed.c.timestamp < _naive(until))
        if through_id is not None:
            query = query.where(feed.c.id <= through_id)
        with engine.connect() as conn:
            rows = conn.execute(query.order_by(feed.c.id)).all()
        if not rows:
            return cls()
        ts, users, posts, actions = zip(*rows, strict=True)
        return cls.from_arrays(
            np.array(ts, dtype="datetime64[us]"), np.array(users), np.array(posts), actions
        )

    def add(self, events: Iterable[Event]) -> None:
        """Take events (any order, including ones older than what is stored)."""
        with self._lock:
            for e in events:
                if e.action not in ACTIONS:
                    raise ValueError(f"action: expected 'view' or 'like', got {e.action!r}")
                u = self._position(self.users, e.user_id)
                p = self._position(self.posts, e.post_id)
                self._delta_by_user.setdefault(u, []).append(len(self._delta))
                self._delta.append(to_us(e.timestamp), u, p, e.action == "like")
            if len(self._delta) > max(self.DELTA_MIN, len(self._store) // 10):
                self._consolidate()

    @staticmethod
    def _position(index: IdIndex, id_: int) -> int:
        pos = index.get(id_)
        return pos if pos >= 0 else int(index.add(np.array([id_]))[0])

    def _consolidate(self) -> None:
        ts, u, p, like = self._delta_np()
        s = self._store
        self._store = _Store(
            np.concatenate([s.ts, ts]),
            np.concatenate([s.u, u]),
            np.concatenate([s.p, p]),
            np.concatenate([s.like, like]),
            len(self.users),
            len(self.posts),
        )
        self._delta, self._delta_by_user = _Delta(), {}

    def _delta_np(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self._delta.arrays()

    # whole-history facts ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._store) + len(self._delta)

    def time_range(self) -> tuple[datetime, datetime] | None:
        """First and last event time, None when empty."""
        with self._lock:
            ts = np.concatenate([self._store.ts, self._delta_np()[0]])
        if len(ts) == 0:
            return None
        return from_us(int(ts.min())), from_us(int(ts.max()))

    def until(self, at: datetime) -> History:
        """A new History holding only the events before `at` (e.g. training data before T0)."""
        ev = self.events_between(None, at)
        return History.from_arrays(
            ev.ts.astype("datetime64[us]"), ev.user_ids, ev.post_ids, ev.is_like
        )

    # point-in-time queries --------------------------------------------------------------

    def user_events_before(
        self, user_id: int, at: datetime
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ts_us, post_ids, is_like) of one user's events before `at`, in time order."""
        at_us = to_us(at)
        with self._lock:
            u = self.users.get(user_id)
            if u < 0:
                empty = np.empty(0, np.int64)
                return empty, empty, np.empty(0, bool)
            ts, p, like = self._store.user_slice(u, at_us)
            rows = self._delta_by_user.get(u)
            if rows:
                d_ts, _, d_p, d_like = self._delta_np()
                rows_arr = np.array(rows)
                rows_arr = rows_arr[d_ts[rows_arr] < at_us]
                if len(rows_arr):
                    ts = np.concatenate([ts, d_ts[rows_arr]])
                    p = np.concatenate([p, d_p[rows_arr]])
                    like = np.concatenate([like, d_like[rows_arr]])
                    order = np.argsort(ts, kind="stable")
                    ts, p, like = ts[order], p[order], like[order]
            return ts, self.posts.ids[p], like

    def liked_before(self, user_id: int, at: datetime) -> np.ndarray:
        """Post ids the user liked before `at`, in time order."""
        _, posts, like = self.user_events_before(user_id, at)
        return posts[like]

    def seen_before(self, user_id: int, at: datetime) -> np.ndarray:
        """Unique post ids with any event of the user before `at` (viewed or liked)."""
        return np.unique(self.user_events_before(user_id, at)[1])

    def post_counts(
        self,
        at: datetime,
        window: timedelta | None = None,
        post_ids: np.ndarray | Sequence[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(views, likes) per post in `[at - window, at)` (all time when `window` is None),
        aligned to `post_ids` (unknown ids count 0) or to `self.posts.ids`."""
        at_us = to_us(at)
        with self._lock:
            counts = self._counts_before(at_us)
            if window is not None:
                counts -= self._counts_before(at_us - window // _ONE_US)
        if post_ids is not None:
            idx = self.posts.lookup(post_ids)
            counts = np.where(idx >= 0, counts[:, idx.clip(0)], 0)
        return counts[0], counts[1]

    def version_at(self, times: Sequence[datetime]) -> tuple:
        """A key equal for two lists of times exactly when the same events precede each time,
        so anything computed from events before those times can be cached under it."""
        with self._lock:
            us = np.array([to_us(t) for t in times], np.int64)
            store = self._store
            key = (id(store), *np.searchsorted(store.ts, us, "left").tolist())
            d_ts = self._delta_np()[0]
            return (*key, *(d_ts[:, None] < us[None, :]).sum(axis=0).tolist())

    def cumulative_counts(self, at: datetime) -> np.ndarray:
        """(2, len(self.posts)) view and like counts before `at`, by history post position."""
        with self._lock:
            return self._counts_before(to_us(at))

    def _counts_before(self, at_us: int) -> np.ndarray:
        n = len(self.posts)
        counts = self._store.counts_before(at_us, n)
        if self._delta:
            ts, _, p, like = self._delta_np()
            keep = ts < at_us
            counts[0] += np.bincount(p[keep & ~like], minlength=n)
            counts[1] += np.bincount(p[keep & like], minlength=n)
        return counts

    def likes_by_user(self, start: datetime, end: datetime) -> dict[int, set[int]]:
        """{user_id: posts liked in [start, end)}: the labels of a window."""
        ev = self.events_between(start, end)
        out: dict[int, set[int]] = {}
        for u, p in zip(
            ev.user_ids[ev.is_like].tolist(), ev.post_ids[ev.is_like].tolist(), strict=True
        ):
            out.setdefault(u, set()).add(p)
        return out

    def users_before(self, at: datetime) -> np.ndarray:
        """Unique user ids with at least one event before `at`."""
        ev = self.events_between(None, at)
        return np.unique(ev.user_ids)

    def events_between(self, start: datetime | None, end: datetime | None) -> EventArrays:
        """Events with `start <= timestamp < end` (open ends when None), sorted by time."""
        lo = -(2**62) if start is None else to_us(start)
        hi = 2**62 if end is None else to_us(end)
        with self._lock:
            s = self._store
            a, b = np.searchsorted(s.ts, [lo, hi], "left")
            ts, u, p, like = s.ts[a:b], s.u[a:b], s.p[a:b], s.like[a:b]
            if self._delta:
                d_ts, d_u, d_p, d_like = self._delta_np()
                keep = (d_ts >= lo) & (d_ts < hi)
                ts = np.concatenate([ts, d_ts[keep]])
                u = np.concatenate([u, d_u[keep]])
                p = np.concatenate([p, d_p[keep]])
                like = np.concatenate([like, d_like[keep]])
                order = np.argsort(ts, kind="stable")
                ts, u, p, like = ts[order], u[order], p[order], like[order]
            return EventArrays(ts, self.users.ids[u], self.posts.ids[p], like)

    def interaction_matrix(
        self,
        at: datetime,
        likes: bool = True,
        since: datetime | None = None,
    ) -> csr_matrix:
        """Users × posts count matrix (rows/cols = `self.users`/`self.posts` positions) of
        likes (or views when `likes=False`) in `[since, at)`."""
        from scipy.sparse import csr_matrix

        ev = self.events_between(since, at)
        keep = ev.is_like if likes else ~ev.is_like
        rows = self.users.lookup(ev.user_ids[keep])
        cols = self.posts.lookup(ev.post_ids[keep])
        shape = (len(self.users), len(self.posts))
        return csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)


def _naive(at: datetime) -> datetime:
    return from_us(to_us(at))
