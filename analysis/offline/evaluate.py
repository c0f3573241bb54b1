"""Rolling-origin HitRate@K (docs/architecture.md, "The evaluation protocol").

For each window start t = T0, T0+W, ... (while t is before the last event): the evaluation users
are those with a like in [t, t+W) and at least one event before t; each gets K posts
recommended at t, excluding posts they viewed (or liked) before t; a hit is any of them liked
in [t, t+W). Pairs are (user, window). Confidence intervals come from a bootstrap over users
(a user's windows are correlated, so users, not pairs, are resampled).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
from feedlab.models.base import Recommender
from feedlab.models.history import History, from_us, to_us

if TYPE_CHECKING:
    from sqlalchemy import Engine

DEFAULT_WINDOW = timedelta(days=7)
DEFAULT_K = 5
N_BOOTSTRAP = 2000


@dataclass(frozen=True)
class Pair:
    """One (user, window) evaluation case."""

    user_id: int
    at: datetime
    liked: frozenset[int]
    seen: np.ndarray


@dataclass
class Result:
    """Per-pair metrics of one model on a list of pairs."""

    model: str
    version: str
    k: int
    user_ids: np.ndarray
    hits: np.ndarray
    recall: np.ndarray
    ndcg: np.ndarray
    recommended: list[list[int]] = field(repr=False)
    catalog_size: int = 0

    @property
    def n(self) -> int:
        return len(self.hits)

    @property
    def hit_rate(self) -> float:
        return float(self.hits.mean()) if self.n else float("nan")

    @property
    def coverage(self) -> float:
        distinct = {p for recs in self.recommended for p in recs}
        return len(distinct) / self.catalog_size if self.catalog_size else float("nan")

    def summary(self, seed: int = 0) -> dict:
        lo, hi = bootstrap_ci(self.hits, self.user_ids, seed=seed)
        return {
            "model": self.model,
            "version": self.version,
            "k": self.k,
            "n": self.n,
            "users": len(np.unique(self.user_ids)),
            "hit_rate": self.hit_rate,
            "hit_rate_ci95": [lo, hi],
            "recall": float(self.recall.mean()) if self.n else float("nan"),
            "ndcg": float(self.ndcg.mean()) if self.n else float("nan"),
            "coverage": self.coverage,
        }


def window_starts(history: History, t0: datetime, window: timedelta) -> list[datetime]:
    """T0, T0+W, ... up to (excluding) the last event time."""
    span = history.time_range()
    if span is None:
        return []
    starts, t = [], t0
    while t <= span[1]:
        starts.append(t)
        t += window
    return starts


def evaluation_pairs(history: History, t0: datetime, window: timedelta) -> list[Pair]:
    """Every (user, window) pair of the protocol, in window then user order."""
    pairs: list[Pair] = []
    for t in window_starts(history, t0, window):
        liked_by = history.likes_by_user(t, t + window)
        for u in sorted(liked_by):
            seen = history.seen_before(u, t)
            if len(seen):
                pairs.append(Pair(u, t, frozenset(liked_by[u]), seen))
    return pairs


def median_time(history: History) -> datetime:
    """The default T0: the median timestamp of view events (every impression is a view; likes
    duplicate some of them, so counting them would pull the median towards likers). On
    MovieLens this is the median rating time. All events when there are no views."""
    ev = history.events_between(None, None)
    if len(ev) == 0:
        raise ValueError("history is empty: nothing to evaluate")
    views = ev.ts[~ev.is_like]
    return from_us(int(np.median(views if len(views) else ev.ts)))


def stored_median_time(engine: Engine) -> datetime:
    """`median_time` of the events in the database's feed table, from its middle one or two
    rows in SQL: the default T0 is known before any event is loaded, so training loads only
    the events before it."""
    from feedlab.storage.schema import VIEW, feed
    from sqlalchemy import func, select, true

    with engine.connect() as conn:
        which = feed.c.action == VIEW
        n = conn.execute(select(func.count()).select_from(feed).where(which)).scalar_one()
        if n == 0:
            which = true()
            n = conn.execute(select(func.count()).select_from(feed)).scalar_one()
        if n == 0:
            raise ValueError("history is empty: nothing to evaluate")
        query = select(feed.c.timestamp).where(which).order_by(feed.c.timestamp)
        middle = conn.execute(query.offset((n - 1) // 2).limit(2 - n % 2)).scalars().all()
    return from_us(int(np.median([to_us(t) for t in middle])))


def recommender_call(model: Recommender) -> Callable[[int, datetime, int, np.ndarray], list[int]]:
    """`f(user, at, k, exclude)`: passes `exclude` when the model takes it, else asks for more
    posts and filters (any `Recommender` works)."""
    params = inspect.signature(model.recommend).parameters
    if "exclude" in params:
        return lambda u, at, k, excl: model.recommend(u, at, k, exclude=excl)

    def over_ask(u: int, at: datetime, k: int, excl: np.ndarray) -> list[int]:
        recs = model.recommend(u, at, k + len(excl))
        return [p for p in recs if p not in set(excl.tolist())][:k]

    return over_ask


def evaluate(
    model: Recommender,
    history: History,
    pairs: Sequence[Pair],
    k: int = DEFAULT_K,
    progress: bool = False,
) -> Result:
    """Metrics of `model` on `pairs` (history given to the model must be the full one: the
    model itself sees only what precedes each request time)."""
    from tqdm import tqdm

    call = recommender_call(model)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    hits, recall, ndcg, recommended = [], [], [], []
    for pair in tqdm(pairs, desc=f"evaluate {model.name}", disable=not progress, leave=False):
        recs = call(pair.user_id, pair.at, k, pair.seen)[:k]
        if len(set(recs)) != len(recs):
            raise AssertionError(f"{model.name} repeated a post for user {pair.user_id}: {recs}")
        gains = np.array([p in pair.liked for p in recs], np.float64)
        hits.append(gains.any())
        recall.append(gains.sum() / len(pair.liked))
        ideal = discounts[: min(len(pair.liked), k)].sum()
        ndcg.append(float(gains @ discounts[: len(gains)]) / ideal)
        recommended.append(recs)
    # coverage denominator: posts with an event before the last request time
    catalog = int((np.add(*history.post_counts(pairs[-1].at)) > 0).sum()) if pairs else 0
    return Result(
        model=model.name,
        version=str(model.version),
        k=k,
        user_ids=np.array([p.user_id for p in pairs], np.int64),
        hits=np.array(hits, np.float64),
        recall=np.array(recall, np.float64),
        ndcg=np.array(ndcg, np.float64),
        recommended=recommended,
        catalog_size=catalog,
    )


def bootstrap_ci(
    values: np.ndarray, user_ids: np.ndarray, seed: int = 0, n_boot: int = N_BOOTSTRAP
) -> tuple[float, float]:
    """95% CI of the pair mean, resampling users (with all their windows)."""
    if len(values) == 0:
        return float("nan"), float("nan")
    users, inverse = np.unique(user_ids, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(users))
    counts = np.bincount(inverse, minlength=len(users)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(users), size=(n_boot, len(users)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def paired_difference(a: Result, b: Result, seed: int = 0, n_boot: int = N_BOOTSTRAP) -> dict:
    """HitRate(a) - HitRate(b) on the same pairs, with a user-resampling bootstrap 95% CI."""
    if a.n != b.n or not np.array_equal(a.user_ids, b.user_ids):
        raise ValueError("compare: the two results are not on the same (user, window) pairs")
    diff = a.hits - b.hits
    lo, hi = bootstrap_ci(diff, a.user_ids, seed=seed, n_boot=n_boot)
    return {
        "a": a.model,
        "b": b.model,
        "difference": float(diff.mean()) if a.n else float("nan"),
        "ci95": [lo, hi],
        "n": a.n,
    }
