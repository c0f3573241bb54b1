"""Collaborative scores shared by both arms: EASE and item-kNN over a user's recent likes, as
candidate sources and as ranking features.

Both are item × item matrices fitted on the likes strictly before a cutoff and refitted per
day (`models.refit.DailyRefit`, off the request path in serving), so training (one fit per
cutoff day) and serving (one per day) see the same kind of model and nothing at or after the
request. Both are opt-in: EASE is fitted only when a column or the EASE source asks for it.

EASE (H. Steck, 2019) is the closed-form linear item-to-item model
B = I - P / diag(P), P = (XᵀX + λI)⁻¹ over the users × posts like matrix X. The solve is dense
over the posts liked before the cutoff: memory grows with the square of that count and time
with its cube (1,682 movies: ~10 MB and about half a second on one core; 7,000 posts: ~200 MB
and tens of seconds per fit, once per cutoff day in training), so it is restricted to the
`ease_max_posts` most-liked posts before the cutoff (3,000 by default: ~36 MB, a few seconds).
Only each post's `neighbours` largest weights are kept, so what is held per day is sparse.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from feedlab.models.candidates import (
    CoVisitation,
    DailyCoVisitation,
    catalog_likes,
    top_positions,
)
from feedlab.models.features import Request, rank_share, zscore
from feedlab.models.history import History
from feedlab.models.refit import DailyRefit

if TYPE_CHECKING:
    from scipy import sparse


class Ease(CoVisitation):
    """EASE item weights by catalog position (row: a liked post, columns: its top weights);
    `scores` sums the rows of a user's likes, as for co-visitation."""

    @classmethod
    def fit(
        cls,
        history: History,
        at: datetime,
        catalog_ids: np.ndarray,
        neighbours: int = 100,
        l2: float = 200.0,
        max_posts: int = 3000,
    ) -> Ease:
        """From likes strictly before `at`, regularised by `l2` (λ), over the `max_posts`
        most-liked posts (the others score 0)."""
        x = catalog_likes(history, at, catalog_ids)
        key = _digest(x, neighbours, l2, max_posts)
        with _EASE_LOCK:
            cached = _EASE_FITS.get(key)
            if cached is not None:
                _EASE_FITS.move_to_end(key)
                return cached
        fitted = cls(_ease_weights(x, neighbours, l2, max_posts))
        with _EASE_LOCK:
            _EASE_FITS[key] = fitted
            while len(_EASE_FITS) > _EASE_KEEP:
                _EASE_FITS.popitem(last=False)
        return fitted


# Fits by content (the like matrix and the settings): a rolling retraining refits the ranker
# every week on 80 daily cutoffs, most of them the previous refit's, on a fresh `History`
# each time; the solve is the cost, so it is done once per distinct like matrix.
_EASE_FITS: OrderedDict[bytes, Ease] = OrderedDict()
_EASE_KEEP = 120
_EASE_LOCK = threading.Lock()


def _digest(x: sparse.csr_matrix, *settings: float) -> bytes:
    h = hashlib.sha1(repr((x.shape, settings)).encode())
    for part in (x.indptr, x.indices):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.digest()


def _ease_weights(
    x: sparse.csr_matrix, neighbours: int, l2: float, max_posts: int
) -> sparse.csr_matrix:
    """The `neighbours` largest EASE weights of each of the `max_posts` most-liked posts
    (rows), by catalog position."""
    from scipy import sparse

    n = x.shape[1]
    counts = np.asarray(x.sum(axis=0)).ravel()
    liked = np.flatnonzero(counts > 0)
    if len(liked) > max_posts:
        liked = np.sort(liked[np.argsort(-counts[liked], kind="stable")[:max_posts]])
    if len(liked) < 2:
        return sparse.csr_matrix((n, n), dtype=np.float32)
    sub = x[:, liked].tocsc()
    gram = (sub.T @ sub).toarray().astype(np.float32)
    gram[np.diag_indices_from(gram)] += l2
    weights = np.linalg.inv(gram)  # float32: λ keeps it well conditioned, twice as fast
    del gram
    weights /= -np.diag(weights).copy()[None, :]  # in place: the solve is the memory peak
    np.fill_diagonal(weights, -np.inf)  # a post never recommends itself
    k = min(neighbours, len(liked) - 1)
    top = np.argpartition(-weights, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(weights, top, axis=1)
    return sparse.csr_matrix(
        (values.ravel(), (np.repeat(liked, k), liked[top.ravel()])), shape=(n, n)
    )


@dataclass
class CollaborativeConfig:
    """EASE's λ, kept weights per post and post cap, and how many candidates it brings."""

    ease_l2: float = 200.0
    ease_neighbours: int = 100
    ease_max_posts: int = 3000
    ease_candidates: int = 0  # opt-in: EASE is fitted only when a request asks for it


COLLABORATIVE_NAMES = (
    "ease",
    "ease_z",
    "ease_rank",
    "covisit",
    "covisit_z",
    "covisit_rank",
)


@dataclass
class Collaborative:
    """EASE over all of a user's likes and co-visitation over their recent likes, for one
    catalog: a feature block (raw scores, and their z-score and rank within the request's
    candidates: raw levels drift with history length) and the EASE candidate source."""

    ease: DailyRefit[Ease]
    covisit: DailyCoVisitation
    config: CollaborativeConfig = field(default_factory=CollaborativeConfig)
    names: tuple[str, ...] = COLLABORATIVE_NAMES

    @classmethod
    def build(
        cls,
        history: History,
        catalog_ids: np.ndarray,
        covisit: DailyCoVisitation,
        config: CollaborativeConfig,
    ) -> Collaborative:
        def fit(day: datetime) -> Ease:
            return Ease.fit(
                history,
                day,
                catalog_ids,
                config.ease_neighbours,
                config.ease_l2,
                config.ease_max_posts,
            )

        return cls(DailyRefit(fit, "EASE"), covisit, config)

    def ease_scores(self, req: Request) -> np.ndarray:
        return self.ease.at(req.at).scores(req.user.liked)

    def __call__(self, req: Request) -> dict[str, np.ndarray]:
        c = req.candidates
        out = {
            "ease": self.ease_scores(req)[c],
            "covisit": self.covisit.at(req.at).scores(req.user.recent_liked)[c],
        }
        for name in ("ease", "covisit"):
            out[f"{name}_z"] = zscore(out[name])
            out[f"{name}_rank"] = rank_share(out[name])
        return out

    def source(self, req: Request, allowed: np.ndarray) -> np.ndarray:
        """Candidate source: the posts EASE scores highest for the user (none without likes)."""
        if not (len(req.user.liked) and self.config.ease_candidates):
            return np.empty(0, np.int64)
        scores = self.ease_scores(req)
        return top_positions(scores, self.config.ease_candidates, allowed & (scores > 0))
