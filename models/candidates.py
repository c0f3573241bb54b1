"""Candidate generation: a few hundred posts per request so that ranking stays within budget.

A candidate source is a small object that, given a request's point-in-time context and the
posts it may return, gives catalog positions best first. The shared sources: recent
popularity, all-time popularity and item-item co-visitation of likes (cosine of the users ×
posts like matrix before a cutoff, top neighbours per post). An arm adds its own (the test
arm: the posts nearest to the user's taste in embedding space).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import numpy as np
from feedlab.models.features import FeatureBuilder, Request, UserState
from feedlab.models.history import History
from feedlab.models.refit import DailyRefit

if TYPE_CHECKING:
    from feedlab.models.catalog import PostCatalog
    from scipy import sparse


def catalog_likes(history: History, at: datetime, catalog_ids: np.ndarray) -> sparse.csr_matrix:
    """Users × catalog posts 0/1 matrix of likes strictly before `at` (posts outside the
    catalog cannot be recommended, so they are left out)."""
    from scipy import sparse

    likes = history.interaction_matrix(at, likes=True)
    likes.sum_duplicates()
    likes.data[:] = 1.0
    hist_pos = history.posts.lookup(catalog_ids)
    to_catalog = sparse.csr_matrix(
        (np.ones(int((hist_pos >= 0).sum()), np.float32),
         (hist_pos[hist_pos >= 0], np.flatnonzero(hist_pos >= 0))),
        shape=(likes.shape[1], len(catalog_ids)),
    )  # fmt: skip
    return (likes @ to_catalog).tocsr()


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

        n = len(catalog_ids)
        x = catalog_likes(history, at, catalog_ids).tocsc()
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


class DailyCoVisitation(DailyRefit[CoVisitation]):
    """Co-visitation refitted per day: the one used at `at` is fitted on likes before the
    midnight starting `at`'s day, so it is point-in-time and at most a day stale (training
    fits one per cutoff day the same way; a fixed fit would go stale and skew serving from
    training). Serving refits it off the request path (`models.refit`)."""

    def __init__(self, history: History, catalog_ids: np.ndarray, neighbours: int) -> None:
        self.history = history
        self.catalog_ids = catalog_ids
        self.neighbours = neighbours
        super().__init__(self._fit_day, "co-visitation")

    def _fit_day(self, day: datetime) -> CoVisitation:
        return CoVisitation.fit(self.history, day, self.catalog_ids, self.neighbours)


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


class CandidateSource(Protocol):
    """Catalog positions for a request, best first, only where `allowed` (bool mask)."""

    def __call__(self, req: Request, allowed: np.ndarray) -> np.ndarray: ...


@dataclass
class CandidateConfig:
    """How many candidates each shared source brings."""

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


@dataclass(frozen=True)
class Popular:
    """The `k` most popular allowed posts by one of `PostStats.popularity_orders`."""

    order: str
    k: int

    def __call__(self, req: Request, allowed: np.ndarray) -> np.ndarray:
        order = req.stats.popularity_orders[self.order]
        return order[allowed[order]][: self.k]


@dataclass(frozen=True)
class CoVisited:
    """The `k` posts most co-liked with the user's recent likes (none without likes)."""

    covisit: DailyCoVisitation
    k: int

    def __call__(self, req: Request, allowed: np.ndarray) -> np.ndarray:
        if not len(req.user.liked):
            return np.empty(0, np.int64)
        scores = self.covisit.at(req.at).scores(req.user.recent_liked)
        return top_positions(scores, self.k, allowed & (scores > 0))


def shared_sources(config: CandidateConfig, covisit: DailyCoVisitation) -> list[CandidateSource]:
    """Recent and all-time popularity, then co-visitation (refitted per day)."""
    return [
        Popular("recent", config.recent),
        Popular("all_time", config.all_time),
        CoVisited(covisit, config.covisit),
    ]


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


def candidate_request(
    builder: FeatureBuilder,
    sources: Sequence[CandidateSource],
    user_id: int,
    at: datetime,
    exclude_seen: bool,
    exclude: Collection[int] | None = None,
) -> Request:
    """The request of (user, at) with its candidates: each source's posts in order, first
    occurrence kept; never a post liked before `at` (nor, with `exclude_seen`, any post seen
    before `at`), nor any post in `exclude`."""
    req = builder.request(user_id, at)
    allowed = ~excluded_mask(builder.posts.catalog, req.user, exclude_seen, exclude)
    merged = np.concatenate([np.empty(0, np.int64), *(source(req, allowed) for source in sources)])
    _, first = np.unique(merged, return_index=True)
    req.candidates = merged[np.sort(first)]
    return req
