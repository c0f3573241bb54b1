"""Point-in-time store of feed events: answers "what did we know at time t" and nothing more.

Every query takes `at` and sees only events with `timestamp < at` (strictly), however late they
were added. Events live in a consolidated, time-sorted numpy store (the base: loaded from the
database in streamed chunks, or memory-mapped from a snapshot and shared by the processes that
map it), a recent store and a small delta of events added online (in any order, appended to
growable arrays); the delta is folded into the recent store once it grows, so `add` stays cheap,
queries stay exact and the base is never copied. A store holds each event once (int64 time,
int32 user and int16/int32 post positions, a bool: 15-17 bytes) plus a 4-byte per-user order.
Per-post counts before t come from cumulative checkpoints every C events plus a `bincount` of at
most C events, so popularity at any t costs microseconds, not a scan.
Times are int64 microseconds since the Unix epoch (naive UTC) internally.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from feedlab.models.base import Event
from feedlab.storage.clock import naive_utc
from sqlalchemy import BigInteger
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix
    from sqlalchemy import Engine
    from sqlalchemy.sql.compiler import SQLCompiler

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

    @classmethod
    def from_ids(cls, ids: np.ndarray) -> IdIndex:
        """The index whose positions are those of `ids` (distinct), e.g. as saved."""
        index = cls()
        index._ids = np.asarray(ids, np.int64)
        index._pos = dict(zip(index._ids.tolist(), range(len(index._ids)), strict=True))
        return index

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


CHUNK_ROWS = 100_000
"""Rows per chunk when streaming the feed table (the only rows held as Python objects)."""
ORDER_CHUNK = 1 << 20
"""Events per step while building the per-user order (its only temporary memory)."""
STORE_FILES = ("ts", "u", "p", "like", "by_user", "u_ptr", "ckpt")


def post_dtype(n_posts: int) -> type[np.signedinteger]:
    """The smallest position type for `n_posts` posts (int16 for catalogs up to 32,767)."""
    return np.int16 if n_posts <= np.iinfo(np.int16).max else np.int32


class _Store:
    """An immutable block of events: one time-sorted copy (int64 times, int32 user and
    int16/int32 post positions, bools), the event indices in (user, time) order as an int32
    permutation with per-user offsets (CSR), and cumulative per-post counts every `step`
    events. Its arrays may be memory-mapped read-only from a snapshot (`save` / `open`)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.ts, self.u, self.p, self.like = (arrays[k] for k in ("ts", "u", "p", "like"))
        self.by_user, self.u_ptr, self.ckpt = arrays["by_user"], arrays["u_ptr"], arrays["ckpt"]
        self.n_posts = self.ckpt.shape[2]
        self.step = _step(len(self.ts))

    @classmethod
    def build(cls, cols: dict[str, np.ndarray], n_users: int, n_posts: int) -> _Store:
        """From events in any order given as `cols` (ts, u, p, like), which it empties: each
        input array is dropped as soon as its sorted copy exists, so sorting holds one extra
        array at a time."""
        ts = np.asarray(cols.pop("ts"), np.int64)
        if len(ts) > 1 and not bool(np.all(ts[1:] >= ts[:-1])):  # streamed rows come sorted
            order = np.argsort(ts, kind="stable")
            ts = ts[order]
            for key in ("u", "p", "like"):
                cols[key] = np.asarray(cols[key])[order]
            del order
        u = np.asarray(cols.pop("u"), np.int32)
        p = np.asarray(cols.pop("p"), post_dtype(n_posts))
        like = np.asarray(cols.pop("like"), bool)
        by_user, u_ptr = _user_order(u, n_users)
        arrays: dict[str, np.ndarray] = {"ts": ts, "u": u, "p": p, "like": like}
        arrays |= {"by_user": by_user, "u_ptr": u_ptr}
        arrays["ckpt"] = _checkpoints(p, like, n_posts)
        return cls(arrays)

    @classmethod
    def empty(cls) -> _Store:
        cols = {k: np.empty(0, np.int64) for k in ("ts", "u", "p")}
        return cls.build({**cols, "like": np.empty(0, bool)}, 0, 0)

    def save(self, path: Path) -> None:
        """Each array as `<name>.npy` in the folder `path`."""
        for name in STORE_FILES:
            np.save(path / f"{name}.npy", getattr(self, name))

    @classmethod
    def open(cls, path: Path, mmap: bool = True) -> _Store:
        """The store saved in `path`, memory-mapped read-only (pages shared by every process
        that maps the same files) unless `mmap` is False."""
        mode: Literal["r"] | None = "r" if mmap else None
        return cls({k: np.asarray(np.load(path / f"{k}.npy", mmap_mode=mode)) for k in STORE_FILES})

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, k).nbytes for k in STORE_FILES)

    def counts_before(self, at_us: int, n_posts: int) -> np.ndarray:
        """(2, n_posts) view and like counts of events before `at_us`."""
        pos = int(np.searchsorted(self.ts, at_us, "left"))
        k = pos // self.step
        out = np.zeros((2, n_posts), np.int64)
        out[:, : self.n_posts] = self.ckpt[k]
        lo = k * self.step
        out += _counts(self.p[lo:pos], self.like[lo:pos], n_posts)
        return out

    def user_slice(self, u: int, at_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ts, post positions, is_like) of user position `u` before `at_us`, in time order."""
        if u >= len(self.u_ptr) - 1:
            return self.ts[:0], self.p[:0], self.like[:0]
        idx = self.by_user[int(self.u_ptr[u]) : int(self.u_ptr[u + 1])]
        ts = self.ts[idx]
        k = int(np.searchsorted(ts, at_us, "left"))
        return ts[:k], self.p[idx[:k]], self.like[idx[:k]]

    def between(self, lo: int, hi: int) -> tuple[np.ndarray, ...]:
        """Views of (ts, u, p, like) of the events with lo <= ts < hi."""
        a, b = np.searchsorted(self.ts, [lo, hi], "left")
        return self.ts[a:b], self.u[a:b], self.p[a:b], self.like[a:b]


def _step(n: int) -> int:
    """Events between two checkpoints: at most 257 checkpoints, at least 4,096 events apart."""
    return max(4096, -(-n // 256))


def _counts(p: np.ndarray, like: np.ndarray, n_posts: int) -> np.ndarray:
    return np.stack(
        [np.bincount(p[~like], minlength=n_posts), np.bincount(p[like], minlength=n_posts)]
    )


def _checkpoints(p: np.ndarray, like: np.ndarray, n_posts: int) -> np.ndarray:
    """(marks, 2, n_posts) int32 view and like counts of the first k * step events."""
    step = _step(len(p))
    marks = np.arange(0, len(p) + 1, step)
    ckpt = np.zeros((len(marks), 2, n_posts), np.int32)
    for k in range(1, len(marks)):
        lo, hi = marks[k - 1], marks[k]
        ckpt[k] = ckpt[k - 1] + _counts(p[lo:hi], like[lo:hi], n_posts)
    return ckpt


def _user_order(u: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """(event indices in (user, time) order, per-user offsets) of time-sorted user positions:
    a counting sort in steps of ORDER_CHUNK events, so it needs the output and one step only
    (a full argsort would hold an int64 index of every event)."""
    n = len(u)
    index_type = np.int32 if n <= np.iinfo(np.int32).max else np.int64
    u_ptr = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(u, minlength=n_users), out=u_ptr[1:])
    cursor = u_ptr[:-1].copy()
    by_user = np.empty(n, index_type)
    for lo in range(0, n, ORDER_CHUNK):
        chunk = u[lo : lo + ORDER_CHUNK]
        order = np.argsort(chunk, kind="stable")
        users = chunk[order]
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        rank = np.arange(len(users)) - np.repeat(starts, np.diff(np.r_[starts, len(users)]))
        by_user[cursor[users] + rank] = order + lo
        cursor += np.bincount(chunk, minlength=n_users)
    return by_user, u_ptr


class _Delta:
    """Events in arrival order in growable arrays: an append writes one slot (capacity
    doubles when full), so `POST /feed` between requests never makes the next request rebuild
    the delta's arrays from scratch. Also the buffer the database loader streams into."""

    def __init__(self, capacity: int = 0) -> None:
        self._n = 0
        self._ts = np.empty(capacity, np.int64)
        self._u = np.empty(capacity, np.int32)
        self._p = np.empty(capacity, np.int32)
        self._like = np.empty(capacity, bool)

    def __len__(self) -> int:
        return self._n

    def append(self, ts: int, u: int, p: int, like: bool) -> None:
        self._reserve(1)
        i = self._n
        self._ts[i], self._u[i], self._p[i], self._like[i] = ts, u, p, like
        self._n += 1

    def extend(self, ts: np.ndarray, u: np.ndarray, p: np.ndarray, like: np.ndarray) -> None:
        self._reserve(len(ts))
        lo, hi = self._n, self._n + len(ts)
        self._ts[lo:hi], self._u[lo:hi], self._p[lo:hi], self._like[lo:hi] = ts, u, p, like
        self._n = hi

    def _reserve(self, k: int) -> None:
        if self._n + k > len(self._ts):
            size = max(1024, 2 * self._n, self._n + k)
            self._ts, self._u, self._p, self._like = (
                self._grown(a, size) for a in (self._ts, self._u, self._p, self._like)
            )

    def _grown(self, a: np.ndarray, size: int) -> np.ndarray:
        out = np.empty(size, a.dtype)
        out[: self._n] = a[: self._n]
        return out

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ts_us, user positions, post positions, is_like) views of the filled slots; later
        appends only write past them (or into new arrays), so a view never changes."""
        n = self._n
        return self._ts[:n], self._u[:n], self._p[:n], self._like[:n]

    def take(self) -> dict[str, np.ndarray]:
        """The filled slots as `_Store.build` columns; the buffer is left empty."""
        cols = dict(zip(("ts", "u", "p", "like"), self.arrays(), strict=True))
        self._n = 0
        self._ts, self._u, self._p, self._like = (np.empty(0, a.dtype) for a in cols.values())
        return cols


class _EpochMicros(FunctionElement[int]):
    """SQL: a naive-UTC timestamp column as int64 microseconds since the epoch, so the
    loader gets integers from the driver instead of one datetime object per row."""

    type = BigInteger()
    inherit_cache = True


@compiles(_EpochMicros, "postgresql")
def _epoch_us_postgresql(element: _EpochMicros, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    arg = compiler.process(column, **kw)
    return f"CAST(EXTRACT(EPOCH FROM {arg}) * 1000000 AS BIGINT)"


@compiles(_EpochMicros, "sqlite")
def _epoch_us_sqlite(element: _EpochMicros, compiler: SQLCompiler, **kw: Any) -> str:
    """SQLite keeps DATETIME as 'YYYY-MM-DD HH:MM:SS[.ffffff]' text: whole seconds from
    strftime, the fraction's six digits (zero-padded) from the text."""
    (column,) = element.clauses
    arg = compiler.process(column, **kw)
    return (
        f"(CAST(strftime('%s', {arg}) AS INTEGER) * 1000000"
        f" + CAST(substr({arg} || '000000', 21, 6) AS INTEGER))"
    )


def read_feed(
    engine: Engine,
    until: datetime | None = None,
    through_id: int | None = None,
    after_id: int | None = None,
    chunk_rows: int | None = None,
) -> tuple[int, Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]]:
    """(row count, chunks of (ts_us, user_ids, post_ids, is_like) in (time, id) order) of the
    `feed` rows before `until` with `after_id < id <= through_id` (each bound when given). The
    rows stream through a server-side cursor: memory holds one chunk of them, and the store
    built from them needs no sort (whose int64 index would cost 8 bytes an event)."""
    from feedlab.storage.schema import feed
    from sqlalchemy import case, func, select

    f = feed.c
    where = []
    if until is not None:
        where.append(f.timestamp < _naive(until))
    if through_id is not None:
        where.append(f.id <= through_id)
    if after_id is not None:
        where.append(f.id > after_id)
    with engine.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(feed).where(*where)).scalar_one())
    is_like = case((f.action == "like", 1), else_=0)
    query = select(_EpochMicros(f.timestamp), f.user_id, f.post_id, is_like).where(*where)

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        with engine.connect() as conn:
            rows_per_chunk = chunk_rows or CHUNK_ROWS
            ordered = query.order_by(f.timestamp, f.id)  # sorted by the database, not here
            result = conn.execution_options(yield_per=rows_per_chunk).execute(ordered)
            for rows in result.partitions():
                # a flat iterator of the values: numpy converts Row objects one by one slowly
                flat = itertools.chain.from_iterable(rows)
                block = np.fromiter(flat, np.int64, 4 * len(rows)).reshape(-1, 4)
                yield block[:, 0].copy(), block[:, 1].copy(), block[:, 2].copy(), block[:, 3] == 1

    return total, chunks()


class History:
    """Feed events by time; every query is point-in-time (strictly before `at`).

    Events live in a base store (built at load, possibly memory-mapped from a snapshot and
    shared between processes, never copied afterwards), a `recent` store that the online
    delta is folded into once it grows, and the delta itself. Thread-safe for one writer
    (`add`) and many readers: the gateway adds events from `POST /feed` while requests read.
    """

    DELTA_MIN = 20_000

    def __init__(self) -> None:
        self.users = IdIndex()
        self.posts = IdIndex()
        self._lock = threading.RLock()
        self._base = _Store.empty()
        self._recent = self._base
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
        cols = {
            "ts": ts_us,
            "like": _is_like(actions),
            "u": hist.users.add(np.asarray(user_ids, np.int64)),
            "p": hist.posts.add(np.asarray(post_ids, np.int64)),
        }
        hist._base = _Store.build(cols, len(hist.users), len(hist.posts))
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
        id <= `through_id`, when given), streamed in chunks into preallocated arrays: peak
        memory is the final arrays plus one chunk."""
        hist = cls()
        total, chunks = read_feed(engine, until=until, through_id=through_id)
        buffer = _Delta(total)
        for ts, user_ids, post_ids, like in chunks:
            buffer.extend(ts, hist.users.add(user_ids), hist.posts.add(post_ids), like)
        hist._base = _Store.build(buffer.take(), len(hist.users), len(hist.posts))
        return hist

    def save(self, path: Path) -> None:
        """Write every event as one consolidated store, and the id indexes, as `.npy` files
        into the existing folder `path` (what `open` maps)."""
        with self._lock:
            store = self._base if not (len(self._recent) or len(self._delta)) else self._merged()
            np.save(path / "user_ids.npy", self.users.ids)
            np.save(path / "post_ids.npy", self.posts.ids)
        store.save(path)

    @classmethod
    def open(cls, path: Path, mmap: bool = True) -> History:
        """The History saved in `path`, its events memory-mapped read-only (see `_Store.open`);
        events added later go to memory."""
        hist = cls()
        hist.users = IdIndex.from_ids(np.load(path / "user_ids.npy"))
        hist.posts = IdIndex.from_ids(np.load(path / "post_ids.npy"))
        hist._base = _Store.open(path, mmap)
        return hist

    def _merged(self) -> _Store:
        pieces = self._pieces(-(2**62), 2**62)
        cols = {
            key: np.concatenate([piece[i] for piece in pieces])
            for i, key in enumerate(("ts", "u", "p", "like"))
        }
        return _Store.build(cols, len(self.users), len(self.posts))

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
            if len(self._delta) > max(self.DELTA_MIN, len(self._recent) // 10):
                self._consolidate()

    def extend(
        self, ts_us: np.ndarray, user_ids: np.ndarray, post_ids: np.ndarray, is_like: np.ndarray
    ) -> None:
        """Take events given as arrays (int64 epoch microseconds, ids, bools), vectorised:
        e.g. the feed rows stored after a snapshot."""
        with self._lock:
            u = self.users.add(user_ids).astype(np.int32)
            p = self.posts.add(post_ids).astype(np.int32)
            start = len(self._delta)
            self._delta.extend(np.asarray(ts_us, np.int64), u, p, np.asarray(is_like, bool))
            if len(self._delta) > max(self.DELTA_MIN, len(self._recent) // 10):
                self._consolidate()
                return
            for i, user in enumerate(u.tolist(), start):
                self._delta_by_user.setdefault(user, []).append(i)

    @staticmethod
    def _position(index: IdIndex, id_: int) -> int:
        pos = index.get(id_)
        return pos if pos >= 0 else int(index.add(np.array([id_]))[0])

    def _consolidate(self) -> None:
        """Fold the delta into the recent store (the base, maybe shared, is never copied)."""
        ts, u, p, like = self._delta.arrays()
        r = self._recent
        cols = {
            "ts": np.concatenate([r.ts, ts]),
            "u": np.concatenate([r.u, u]),
            "p": np.concatenate([r.p.astype(np.int32), p]),
            "like": np.concatenate([r.like, like]),
        }
        self._recent = _Store.build(cols, len(self.users), len(self.posts))
        self._delta, self._delta_by_user = _Delta(), {}

    def _pieces(self, lo: int, hi: int) -> list[tuple[np.ndarray, ...]]:
        """(ts, u, p, like) of the events with lo <= ts < hi from the base, the recent store
        and the delta (each time-sorted except the delta); empty pieces left out. Views or
        copies that never change, so callers compute on them outside the lock."""
        with self._lock:
            pieces = [self._base.between(lo, hi), self._recent.between(lo, hi)]
            if self._delta:
                ts, u, p, like = self._delta.arrays()
                keep = (ts >= lo) & (ts < hi)
                pieces.append((ts[keep], u[keep], p[keep], like[keep]))
        return [piece for piece in pieces if len(piece[0])]

    def memory(self) -> dict[str, int]:
        """Bytes of the event arrays: `base` (memory-mapped when opened from a snapshot),
        `recent` and `delta` (this process's own)."""
        with self._lock:
            delta = sum(a.nbytes for a in self._delta.arrays())
            return {"base": self._base.nbytes, "recent": self._recent.nbytes, "delta": delta}

    # whole-history facts ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._base) + len(self._recent) + len(self._delta)

    def time_range(self) -> tuple[datetime, datetime] | None:
        """First and last event time, None when empty."""
        pieces = self._pieces(-(2**62), 2**62)
        if not pieces:
            return None
        first = min(int(piece[0].min()) for piece in pieces)
        last = max(int(piece[0].max()) for piece in pieces)
        return from_us(first), from_us(last)

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
            parts = [s.user_slice(u, at_us) for s in (self._base, self._recent)]
            rows = self._delta_by_user.get(u)
            if rows:
                d_ts, _, d_p, d_like = self._delta.arrays()
                rows_arr = np.array(rows)
                rows_arr = rows_arr[d_ts[rows_arr] < at_us]
                parts.append((d_ts[rows_arr], d_p[rows_arr], d_like[rows_arr]))
        parts = [part for part in parts if len(part[0])] or parts[:1]
        ts, p, like = parts[0]
        if len(parts) > 1:
            ts, p, like = (np.concatenate([part[i] for part in parts]) for i in range(3))
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
            key: list = []
            for store in (self._base, self._recent):
                key += [id(store), *np.searchsorted(store.ts, us, "left").tolist()]
            d_ts = self._delta.arrays()[0]
            return (*key, *(d_ts[:, None] < us[None, :]).sum(axis=0).tolist())

    def cumulative_counts(self, at: datetime) -> np.ndarray:
        """(2, len(self.posts)) view and like counts before `at`, by history post position."""
        with self._lock:
            return self._counts_before(to_us(at))

    def _counts_before(self, at_us: int) -> np.ndarray:
        n = len(self.posts)
        counts = self._base.counts_before(at_us, n)
        if len(self._recent):
            counts += self._recent.counts_before(at_us, n)
        if self._delta:
            ts, _, p, like = self._delta.arrays()
            keep = ts < at_us
            counts += _counts(p[keep], like[keep], n)
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
        pieces = self._pieces(-(2**62), to_us(at))
        positions = np.unique(np.concatenate([np.empty(0, np.int32), *(p[1] for p in pieces)]))
        return self.users.ids[positions]

    def events_between(self, start: datetime | None, end: datetime | None) -> EventArrays:
        """Events with `start <= timestamp < end` (open ends when None), sorted by time."""
        lo = -(2**62) if start is None else to_us(start)
        hi = 2**62 if end is None else to_us(end)
        pieces = self._pieces(lo, hi)
        if not pieces:
            empty = np.empty(0, np.int64)
            return EventArrays(empty, empty, empty, np.empty(0, bool))
        ts, u, p, like = pieces[0]
        if len(pieces) > 1:
            ts, u, p, like = (np.concatenate([piece[i] for piece in pieces]) for i in range(4))
            order = np.argsort(ts, kind="stable")
            ts, u, p, like = ts[order], u[order], p[order], like[order]
        return EventArrays(ts, self.users.ids[u], self.posts.ids[p], like)

    def likes_between(self, start: datetime, end: datetime) -> tuple[np.ndarray, np.ndarray]:
        """(ts_us, post positions) of the likes in `[start, end)`, in no particular order:
        only the likes are copied, never an id array of every event."""
        ts, posts = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
        for t, _, p, like in self._pieces(to_us(start), to_us(end)):
            idx = np.flatnonzero(like)
            ts.append(t[idx])
            posts.append(p[idx])
        return np.concatenate(ts), np.concatenate(posts)

    def interaction_matrix(
        self,
        at: datetime,
        likes: bool = True,
        since: datetime | None = None,
    ) -> csr_matrix:
        """Users × posts count matrix (rows/cols = `self.users`/`self.posts` positions) of
        likes (or views when `likes=False`) in `[since, at)`. Built from positions piece by
        piece: no id or time array of all events is made."""
        from scipy.sparse import csr_matrix

        lo = -(2**62) if since is None else to_us(since)
        rows, cols = [np.empty(0, np.int32)], [np.empty(0, np.int32)]
        for _, u, p, like in self._pieces(lo, to_us(at)):
            idx = np.flatnonzero(like if likes else ~like)
            rows.append(u[idx])
            cols.append(p[idx].astype(np.int32))
        r, c = np.concatenate(rows), np.concatenate(cols)
        shape = (len(self.users), len(self.posts))
        return csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=shape)


def _naive(at: datetime) -> datetime:
    return from_us(to_us(at))
