"""Candidate generation: a few hundred posts per request so that ranking stays within budget.

Sources: recent popularity, all-time popularity and item-item co-visitation of likes (cosine of
the users × posts like matrix before a cutoff, top neighbours per post). Co-visitation scores
are also a ranking feature.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from feedlab.models.features import FeatureBuilder, PostStats, Request, UserState
from feedlab.models.history import History

if TYPE_CHECKING:
    from feedlab.models.catalog import PostCatalog
    from scipy import sparse


class CoVisitation:
    """Post × post cosine similarity of likes before a cutoff, by catalog position."""

    def __init__(self, similarity: sparse.csr_matrix) -> None:
        self.similarity = similarity.tocsr().astype(np.float32)

    @classmethod
    def fit(
        cls, history: History, at: datetime, catalog_ids: np.ndarray, neighbours: int = 50
    ) -> CoVisitation:
        """From likes strictly before `at`; keeps each post's `neighbours` most similar posts."""
        from scipy import sparse

        likes = history.interaction_matrix(at, likes=True)
        likes.data[:] = 1.0
        hist_pos = history.posts.lookup(catalog_ids)
        n = len(catalog_ids)
        # catalog columns only (posts outside the catalog cannot be recommended)
        to_catalog = sparse.csr_matrix(
            (np.ones(int((hist_pos >= 0).sum()), np.float32),
             (hist_pos[hist_pos >= 0], np.flatnonzero(hist_pos >= 0))),
            shape=(likes.shape[1], n),
        )  # fmt: skip
        x = (likes @ to_catalog).tocsc()
        co = (x.T @ x).tocsr()
        norms = np.sqrt(co.diagonal()).astype(np.float32)
        co.setdiag(0)
        co.eliminate_zeros()
        co = co.tocoo()
        values = co.data / (norms[co.row] * norms[co.col])
        sim = sparse.csr_matrix((values.astype(np.float32), (co.row, co.col)), shape=(n, n))
        return cls(_top_per_row(sim, neighbours))

    def scores(self, liked: np.ndarray) -> np.ndarray:
        """Catalog-wide score: summed similarity to the posts in `liked` (catalog positions)."""
        sim = self.similarity
        n = sim.shape[0]
        if len(liked) == 0:
            return np.zeros(n, np.float32)
        # straight from the CSR arrays: scipy's row indexing costs ~1 ms of overhead per call
        starts = sim.indptr[liked]
        lengths = sim.indptr[np.asarray(liked) + 1] - starts
        entries = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(
            lengths.sum()
        )
        return np.bincount(sim.indices[entries], sim.data[entries], minlength=n).astype(np.float32)


class DailyCoVisitation:
    """Co-visitation refitted per day: the one used at `at` is fitted on likes before the
    midnight starting `at`'s day, so it is point-in-time and at most a day stale (training
    fits one per cutoff day the same way; a fixed fit would go stale and skew serving from
    training). Keeps the last few days."""

    KEEP = 4

    def __init__(self, history: History, catalog_ids: np.ndarray, neighbours: int) -> None:
        self.history = history
        self.catalog_ids = catalog_ids
        self.neighbours = neighbours
        self._fits: OrderedDict[datetime, CoVisitation] = OrderedDict()
        self._lock = threading.Lock()

    def at(self, at: datetime) -> CoVisitation:
        day = datetime(at.year, at.month, at.day)
        with self._lock:
            fit = self._fits.get(day)
            if fit is None:
                fit = CoVisitation.fit(self.history, day, self.catalog_ids, self.neighbours)
                self._fits[day] = fit
                while len(self._fits) > self.KEEP:
                    self._fits.popitem(last=False)
            self._fits.move_to_end(day)
            return fit


def _top_per_row(matrix: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    from scipy import sparse

    rows, cols, vals = [], [], []
    for i in range(matrix.shape[0]):
        lo, hi = matrix.indptr[i], matrix.indptr[i + 1]
        if hi == lo:
            continue
        data, idx = matrix.data[lo:hi], matrix.indices[lo:hi]
        keep = np.argsort(-data)[:k] if hi - lo > k else slice(None)
        rows.append(np.full(len(data[keep]), i))
        cols.append(idx[keep])
        vals.append(data[keep])
    if not rows:
        return sparse.csr_matrix(matrix.shape, dtype=np.float32)
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=matrix.shape
    )


@dataclass
class CandidateConfig:
    recent: int = 150
    all_time: int = 50
    covisit: int = 150


def top_positions(score: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
    """Positions of the `k` highest scores among `allowed` (bool mask), best first."""
    masked = np.where(allowed, score, -np.inf)
    k = min(k, int(allowed.sum()))
    if k <= 0:
        return np.empty(0, np.int64)
    top = np.argpartition(-masked, k - 1)[:k]
    return top[np.argsort(-masked[top], kind="stable")]


def first_allowed(order: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    """The first `k` positions of `order` that `allowed` (bool mask by position) lets through."""
    return order[allowed[order]][:k]


def generate(
    stats: PostStats,
    covisit_scores: np.ndarray,
    user: UserState,
    excluded: np.ndarray,
    config: CandidateConfig,
) -> np.ndarray:
    """Unique candidate positions (catalog), never in `excluded` (bool mask)."""
    allowed = ~excluded
    orders = stats.popularity_orders
    parts = [
        first_allowed(orders["recent"], allowed, config.recent),
        first_allowed(orders["all_time"], allowed, config.all_time),
    ]
    if len(user.liked):
        parts.append(top_positions(covisit_scores, config.covisit, allowed & (covisit_scores > 0)))
    merged = np.concatenate(parts)
    _, first = np.unique(merged, return_index=True)
    return merged[np.sort(first)]


def covisit_scores(covisit: CoVisitation, user: UserState) -> dict[str, np.ndarray]:
    """Catalog-wide co-visitation scores for a user: summed and per recent like."""
    recent = user.recent_liked
    total = covisit.scores(recent)
    return {"covisit": total, "covisit_mean": total / max(1, len(recent))}


def excluded_mask(
    catalog: PostCatalog,
    user: UserState,
    exclude_seen: bool,
    exclude: Collection[int] | None = None,
) -> np.ndarray:
    """Catalog positions a request must never return: posts the user liked (and, with
    `exclude_seen`, any post they saw) before the request, and the post ids in `exclude`."""
    n = len(catalog)
    excluded = user.seen_mask(n) if exclude_seen else np.zeros(n, bool)
    excluded[user.liked] = True
    if exclude is not None and len(exclude):
        extra = catalog.index.lookup(np.fromiter(exclude, np.int64, len(exclude)))
        excluded[extra[extra >= 0]] = True
    return excluded


def scoring_request(
    builder: FeatureBuilder,
    covisit: CoVisitation,
    config: CandidateConfig,
    user_id: int,
    at: datetime,
    exclude_seen: bool,
    exclude: Collection[int] | None = None,
    more: Callable[[UserState, np.ndarray], np.ndarray | None] | None = None,
) -> Request:
    """Candidates and context for one (user, at): never a post liked before `at` (nor, with
    `exclude_seen`, any post seen before `at`), nor any post in `exclude`. An arm adds its own
    source through `more(user, excluded) -> positions`, appended after the shared sources."""
    user = builder.user_state(user_id, at)
    excluded = excluded_mask(builder.posts.catalog, user, exclude_seen, exclude)
    stats = builder.stats(at)
    scores = covisit_scores(covisit, user)
    candidates = generate(stats, scores["covisit"], user, excluded, config)
    extra = more(user, excluded) if more is not None else None
    if extra is not None and len(extra):
        merged = np.concatenate([candidates, extra])
        _, first = np.unique(merged, return_index=True)
        candidates = merged[np.sort(first)]
    return builder.request(user_id, at, candidates, scores, user=user, stats=stats)
