"""Popularity recommenders: the gateway's `popular` fallback arm and the offline baselines.

`PopularRecommender` ranks posts by likes in `[at - window, at)` (all time when `window` is
None), breaking ties by all-time likes, then views. Everyone, cold-start users included, gets
the same list minus what they liked before `at`. `RandomRecommender` draws uniformly among
posts that had any event before `at`, reproducibly per (user, at).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

import numpy as np
from feedlab.models.history import History, to_us

DEFAULT_WINDOW = timedelta(days=30)


def excluded_posts(
    history: History, user_id: int, at: datetime, exclude: Collection[int] | None = None
) -> np.ndarray:
    """What a list for (user, at) must leave out: posts liked before `at`, plus `exclude`."""
    liked = history.liked_before(user_id, at)
    if exclude is not None and len(exclude):
        liked = np.concatenate([liked, np.fromiter(exclude, np.int64, len(exclude))])
    return np.unique(liked)


def top_excluding(
    post_ids: np.ndarray, scores: np.ndarray, limit: int, excluded: np.ndarray
) -> list[int]:
    """The `limit` best-scored posts not in `excluded`, best first, no repeats; ties go to
    the earlier position (scores must be finite)."""
    n = len(post_ids)
    take = min(n, limit + len(excluded))
    if take <= 0:
        return []
    if take < n:
        top = np.argpartition(-scores, take - 1)[:take]
        top = top[np.lexsort((top, -scores[top]))]
    else:
        top = np.lexsort((np.arange(n), -scores))
    chosen = post_ids[top]
    if len(excluded):
        chosen = chosen[~np.isin(chosen, excluded)]
    _, first = np.unique(chosen, return_index=True)
    return chosen[np.sort(first)][:limit].tolist()


class PopularRecommender:
    """Most-liked posts in a recent window (or all time); no artifact, no training."""

    def __init__(
        self,
        history: History,
        window: timedelta | None = DEFAULT_WINDOW,
        name: str = "popular",
    ) -> None:
        self.history = history
        self.window = window
        self.name = name
        self.version = "all-time" if window is None else f"{window.days}d"

    def scores(self, at: datetime) -> tuple[np.ndarray, np.ndarray]:
        """(post_ids, score) over every post known to the history; higher is better."""
        h = self.history
        views, likes = h.post_counts(at)
        score = likes * float(views.max(initial=0) + 1) + views
        if self.window is not None:
            _, recent = h.post_counts(at, self.window)
            score = recent * float(score.max(initial=0) + 1) + score
        return h.posts.ids, score

    def recommend(
        self, user_id: int, at: datetime, limit: int, exclude: Collection[int] | None = None
    ) -> list[int]:
        post_ids, score = self.scores(at)
        known = score > 0
        return top_excluding(
            post_ids[known], score[known], limit, excluded_posts(self.history, user_id, at, exclude)
        )


class RandomRecommender:
    """Uniform random posts among those with an event before `at` (the floor baseline)."""

    def __init__(self, history: History, seed: int = 0, name: str = "random") -> None:
        self.history = history
        self.seed = seed
        self.name = name
        self.version = f"seed{seed}"

    def recommend(
        self, user_id: int, at: datetime, limit: int, exclude: Collection[int] | None = None
    ) -> list[int]:
        views, likes = self.history.post_counts(at)
        pool = self.history.posts.ids[(views + likes) > 0]
        pool = pool[~np.isin(pool, excluded_posts(self.history, user_id, at, exclude))]
        rng = np.random.default_rng([self.seed, abs(int(user_id)), to_us(at) & (2**63 - 1)])
        return rng.permutation(pool)[:limit].tolist()
