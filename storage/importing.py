"""What every importer shares: turn raw rows into validated users/posts/feed frames, then load
them into an empty database (or swap them in with `replace=True`) in one transaction.

Feed rows arrive as a stream of `Rows` batches so a file of tens of millions of events is never
held in memory whole; a bad row in any batch rolls the whole transaction back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from feedlab.storage import schema
from feedlab.storage.bulk import bulk_load, indexes_deferred
from feedlab.storage.validation import ImportValidationError, Rows
from sqlalchemy import Engine, String, Table, func, select, text
from tqdm import tqdm

PROFILE_COLUMNS = ("age", "gender", "country", "city", "os", "source")
WORLD_TABLES = (schema.feed, schema.posts, schema.users, schema.post_embeddings)
_INT_TEXT = r"^[+-]?\d+$"


class DatabaseNotEmptyError(RuntimeError):
    """The target already holds users, posts or feed events and `replace` was not asked for."""


@dataclass
class ImportSummary:
    users: int
    posts: int
    views: int
    likes: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"imported {self.users:,} users, {self.posts:,} posts, {self.views:,} views, "
            f"{self.likes:,} likes in {self.seconds:.1f} s"
        )


def users_frame(rows: Rows) -> pd.DataFrame:
    """users: `user_id`, the known profile columns, every other column into `attributes`."""
    rows.require_columns("user_id")
    frame = rows.frame
    user_id = rows.integers("user_id")
    rows.unique(user_id, "user_id")
    out = pd.DataFrame({"user_id": user_id})
    for column in PROFILE_COLUMNS:
        if column not in frame.columns:
            out[column] = None
        elif column == "age":
            out[column] = rows.integers("age", required=False, low=0, high=150)
        else:
            out[column] = rows.strings(column, max_len=_max_len(schema.users, column))
    extra = [c for c in frame.columns if c not in ("user_id", *PROFILE_COLUMNS)]
    out["attributes"] = _attributes(frame, extra, rows) if extra else None
    rows.raise_first()
    return out


def posts_frame(rows: Rows) -> pd.DataFrame:
    """posts: `post_id`, `text`, `topic`, optional `created_at`."""
    rows.require_columns("post_id", "text", "topic")
    post_id = rows.integers("post_id")
    rows.unique(post_id, "post_id")
    out = pd.DataFrame(
        {
            "post_id": post_id,
            "text": rows.strings("text", empty_is_null=False),
            "topic": rows.strings("topic", max_len=_max_len(schema.posts, "topic")),
            "created_at": (
                rows.timestamps("created_at", required=False)
                if "created_at" in rows.frame.columns
                else pd.Series(pd.NaT, index=post_id.index, dtype="datetime64[us]")
            ),
        }
    )
    rows.raise_first()
    return out


class FeedChecker:
    """Validates feed batches against the imported users/posts and across batches."""

    def __init__(self, user_ids: pd.Series, post_ids: pd.Series) -> None:
        self.user_ids = np.asarray(user_ids, dtype=np.int64)
        self.post_ids = np.asarray(post_ids, dtype=np.int64)
        self.event_hashes = np.empty(0, dtype=np.uint64)
        self.views = self.likes = 0

    def frame(self, rows: Rows) -> pd.DataFrame:
        rows.require_columns("timestamp", "user_id", "post_id", "action", "target")
        out = pd.DataFrame(
            {
                "timestamp": rows.timestamps("timestamp"),
                "user_id": rows.integers("user_id"),
                "post_id": rows.integers("post_id"),
                "action": rows.strings("action", required=True, choices=schema.ACTIONS),
                "target": rows.integers("target", required=False, low=0, high=1),
            }
        )
        rows.known(out["user_id"], self.user_ids, "user_id", "user")
        rows.known(out["post_id"], self.post_ids, "post_id", "post")
        likes = out["action"].eq(schema.LIKE)
        out.loc[likes, "target"] = pd.NA  # target is NULL for likes
        if "event_id" in rows.frame.columns:
            out["event_id"] = self._event_ids(rows)
        rows.raise_first()
        self.likes += int(likes.sum())
        self.views += len(out) - int(likes.sum())
        return out

    def _event_ids(self, rows: Rows) -> pd.Series:
        """Event ids, unique within the batch and (by 64-bit hash) across earlier batches."""
        ids = rows.strings("event_id", max_len=_max_len(schema.feed, "event_id"))
        present = ids.notna()
        rows.unique(ids.where(present), "event_id")
        hashes = pd.util.hash_pandas_object(ids[present], index=False).to_numpy(np.uint64)
        seen = np.isin(hashes, self.event_hashes)
        if seen.any():
            pos = int(np.flatnonzero(present.to_numpy())[int(np.argmax(seen))])
            rows.fail(
                pos, "event_id", f"duplicate value {ids.iloc[pos]!r} (seen on an earlier line)"
            )
        self.event_hashes = np.union1d(self.event_hashes, hashes)
        return ids


def load_world(
    engine: Engine,
    users: pd.DataFrame,
    posts: pd.DataFrame,
    feed_batches: Callable[[FeedChecker], Iterable[pd.DataFrame]],
    *,
    replace: bool = False,
    desc: str = "feed",
) -> ImportSummary:
    """Load validated users and posts, then each validated feed batch, all in one transaction.

    `feed_batches(checker)` yields feed frames already passed through `checker.frame`, so a bad
    feed row anywhere raises inside the transaction and nothing stays stored.
    """
    started = time.perf_counter()
    checker = FeedChecker(users["user_id"], posts["post_id"])
    with engine.begin() as conn:
        _clear_or_refuse(conn, replace)
        bulk_load(conn, schema.users, users)
        bulk_load(conn, schema.posts, posts)
        batches = feed_batches(checker)
        try:
            bar = tqdm(desc=f"loading {desc}", unit=" events", disable=None)
            with bar, indexes_deferred(conn, schema.feed):
                for batch in batches:
                    bulk_load(conn, schema.feed, batch, progress=bar)
        finally:
            _close(batches)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE users, posts, feed"))
    return ImportSummary(
        len(users), len(posts), checker.views, checker.likes, time.perf_counter() - started
    )


def checked(checker: FeedChecker, batches: Iterable[Rows]) -> Iterator[pd.DataFrame]:
    """Validated frames of `batches`; a streaming source is closed even when a batch fails."""
    try:
        for rows in batches:
            yield checker.frame(rows)
    finally:
        _close(batches)


def _close(source: Iterable) -> None:
    """Close a generator (and the cursor it streams from) even when it was not exhausted."""
    close = getattr(source, "close", None)
    if close is not None:
        close()


def _clear_or_refuse(conn, replace: bool) -> None:
    counts = {
        t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
        for t in (schema.users, schema.posts, schema.feed)
    }
    if not replace:
        if any(counts.values()):
            held = ", ".join(f"{n:,} {name}" for name, n in counts.items())
            raise DatabaseNotEmptyError(
                f"the database already holds data ({held}); "
                "pass --replace to swap it for the imported data in one transaction"
            )
        return
    if conn.dialect.name == "postgresql":
        names = ", ".join(t.name for t in WORLD_TABLES)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
    else:
        for table in WORLD_TABLES:
            conn.execute(table.delete())


def _attributes(frame: pd.DataFrame, columns: list[str], rows: Rows) -> pd.Series:
    """Unknown profile columns as a dict per row; integer-looking text becomes an int."""
    converted = {}
    for column in columns:
        values = frame[column]
        missing = rows.missing(column)
        if pd.api.types.is_integer_dtype(values) or pd.api.types.is_float_dtype(values):
            converted[column] = values.astype(object).where(~missing, None)
            continue
        text = values.astype("string").str.strip()
        is_int = text.str.match(_INT_TEXT).fillna(False)
        as_int = pd.to_numeric(text.where(is_int), errors="coerce").astype("Int64").astype(object)
        out = text.astype(object).where(~is_int, as_int)
        converted[column] = out.where(~missing, None)
    records = pd.DataFrame(converted).to_dict("records")
    cleaned = [
        {k: _plain(v) for k, v in r.items() if v is not None and v is not pd.NA} or None
        for r in records
    ]
    return pd.Series(cleaned, index=frame.index, dtype=object)


def _plain(value):
    """numpy scalars → Python scalars, so the dict serialises as JSON."""
    return value.item() if isinstance(value, np.generic) else value


__all__ = [
    "DatabaseNotEmptyError",
    "FeedChecker",
    "ImportSummary",
    "ImportValidationError",
    "checked",
    "load_world",
    "posts_frame",
    "users_frame",
]


def _max_len(table: Table, column: str) -> int | None:
    """The declared length of a string column (None: unbounded)."""
    kind = table.c[column].type
    return kind.length if isinstance(kind, String) else None
