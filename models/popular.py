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
        self._ranked: tuple[tuple, np.ndarray] | None = None

    def scores(self, at: datetime) -> tuple[np.ndarray, np.ndarray]:
        """(post_ids, score) over every post known to the history; higher is better."""
        h = self.history
        views, likes = h.post_counts(at)
        score = likes * float(views.max(initial=0) + 1) + views
        if self.window is not None:
            _, recent = h.post_counts(at, self.window)
            score = recent * float(score.max(initial=0) + 1) + score
        return h.posts.ids, score

    def ranking(self, at: datetime) -> np.ndarray:
        """Post ids with any event before `at`, best first (ties: history order). Cached while
        the same events precede `at` and the window start: every user gets this list, so a
        request pays for the scores only when an event came in (or left the window)."""
        times = [at] if self.window is None else [at, at - self.window]
        key = self.history.version_at(times)
        if self._ranked is None or self._ranked[0] != key:
            post_ids, score = self.scores(at)
            known = score > 0
            ids, score = post_ids[known], score[known]
            self._ranked = (key, ids[np.lexsort((np.arange(len(ids)), -score))])
        return self._ranked[1]

    def recommend(
        self, user_id: int, at: datetime, limit: int, exclude: Collection[int] | None = None
    ) -> list[int]:
        excluded = set(self.history.liked_before(user_id, at).tolist())
        if exclude is not None:  # an id array from offline evaluation, or a set
            excluded.update(int(p) for p in exclude)
        out: list[int] = []
        # the first limit + len(excluded) ranked posts always hold `limit` allowed ones
        for post in self.ranking(at)[: limit + len(excluded)].tolist():
            if post not in excluded:
                out.append(post)
                if len(out) == limit:
                    break
        return out


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
