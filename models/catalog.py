"""Post and user metadata as arrays, loaded once (the features never query the DB per request)."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from feedlab.models.history import IdIndex

if TYPE_CHECKING:
    from sqlalchemy import Engine


@dataclass
class PostCatalog:
    """Posts by position: ids, texts and topics (None when unknown)."""

    post_ids: np.ndarray
    texts: list[str]
    topics: list[str | None]
    index: IdIndex = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.post_ids = np.asarray(self.post_ids, np.int64)
        if not (len(self.post_ids) == len(self.texts) == len(self.topics)):
            raise ValueError("posts: post_ids, texts and topics must have the same length")
        self.index = IdIndex()
        self.index.add(self.post_ids)
        if len(self.index) != len(self.post_ids):
            raise ValueError("post_id: duplicate post ids in the catalog")

    def __len__(self) -> int:
        return len(self.post_ids)

    @classmethod
    def from_records(
        cls, post_ids: Sequence[int], texts: Sequence[str | None], topics: Sequence[str | None]
    ) -> PostCatalog:
        return cls(np.asarray(post_ids, np.int64), [t or "" for t in texts], list(topics))

    @classmethod
    def from_engine(cls, engine: Engine) -> PostCatalog:
        """Every post in the `posts` table."""
        from feedlab.storage.schema import posts
        from sqlalchemy import select

        with engine.connect() as conn:
            rows = conn.execute(
                select(posts.c.post_id, posts.c.text, posts.c.topic).order_by(posts.c.post_id)
            ).all()
        if not rows:
            return cls(np.empty(0, np.int64), [], [])
        ids, texts, topics = zip(*rows, strict=True)
        return cls.from_records(ids, texts, topics)


@dataclass
class UserProfiles:
    """Static user attributes by user id: numeric columns (NaN when missing) and categorical
    columns (strings, "" when missing). Unknown users get NaN / ""."""

    user_ids: np.ndarray
    numeric: dict[str, np.ndarray]
    categorical: dict[str, np.ndarray]
    index: IdIndex = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.user_ids = np.asarray(self.user_ids, np.int64)
        self.index = IdIndex()
        self.index.add(self.user_ids)

    @classmethod
    def empty(cls) -> UserProfiles:
        return cls(np.empty(0, np.int64), {}, {})

    @classmethod
    def from_engine(cls, engine: Engine) -> UserProfiles:
        """Profile columns of the `users` table; `attributes` JSON keys become columns too."""
        from feedlab.storage.schema import users
        from sqlalchemy import select

        cols = ["age", "gender", "country", "city", "os", "source"]
        with engine.connect() as conn:
            rows = conn.execute(select(users).order_by(users.c.user_id)).mappings().all()
        if not rows:
            return cls.empty()
        records = []
        for row in rows:
            rec = {c: row[c] for c in cols}
            rec.update({f"attr_{k}": v for k, v in (row["attributes"] or {}).items()})
            records.append(rec)
        return cls.from_records([r["user_id"] for r in rows], records)

    @classmethod
    def from_records(cls, user_ids: Sequence[int], records: Sequence[dict]) -> UserProfiles:
        """Columns are numeric when every present value is a number, else categorical."""
        keys = sorted({k for r in records for k, v in r.items() if v is not None})
        numeric, categorical = {}, {}
        for k in keys:
            values = [r.get(k) for r in records]
            present = [v for v in values if v is not None]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
                numeric[k] = np.array([np.nan if v is None else v for v in values], np.float64)
            else:
                categorical[k] = np.array(["" if v is None else str(v) for v in values], object)
        return cls(np.asarray(user_ids, np.int64), numeric, categorical)

    def save(self, path: Path) -> None:
        path.write_bytes(pickle.dumps(self))

    @staticmethod
    def load(path: Path) -> UserProfiles:
        """Only for artifacts this project wrote (pickle)."""
        return pickle.loads(path.read_bytes())

    def row(self, user_id: int) -> tuple[dict[str, float], dict[str, str]]:
        """One user's numeric and categorical values."""
        i = self.index.get(user_id)
        if i < 0:
            return {k: np.nan for k in self.numeric}, {k: "" for k in self.categorical}
        return (
            {k: float(v[i]) for k, v in self.numeric.items()},
            {k: str(v[i]) for k, v in self.categorical.items()},
        )
