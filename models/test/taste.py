"""A user's taste in embedding space, read point-in-time from the likes in a `UserState`.

The user is the recency-weighted mean of the unit vectors of the posts they liked before `at`
(weight halves every `half_life_days`), plus their latest likes kept one by one (a user often
likes near neighbours of what they liked last). Nothing is stored per user: the state comes
from the shared History on every request, so a like is in the taste as soon as the History
has it, and a like at or after `at` can never be.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from feedlab.models.candidates import top_positions
from feedlab.models.features import DAY_US, Request, UserState, rank_share, zscore

RECENT_LIKES = 10
RECENT_SEEN = 60
PROFILE_EVENTS = 200  # older likes weigh < 1% at the default half-life anyway
KNN = 10


@dataclass(frozen=True)
class TasteConfig:
    half_life_days: float = 30.0
    recent: int = RECENT_LIKES
    recent_seen: int = RECENT_SEEN
    knn: int = KNN


@dataclass(frozen=True)
class Taste:
    """`profile`: unit vector (zeros for a user without likes); `recent`: latest liked
    vectors, newest last; `passed`: the same profile of posts seen but not liked; `seen` and
    `seen_liked`: the latest distinct posts seen, and whether each was liked."""

    profile: np.ndarray
    recent: np.ndarray
    n_likes: int
    passed: np.ndarray
    seen: np.ndarray
    seen_liked: np.ndarray


def user_taste(vectors: np.ndarray, user: UserState, config: TasteConfig) -> Taste:
    """The taste of `user` from likes strictly before `user.at_us` (UserState holds no more)."""
    known = (user.positions >= 0) & (user.ts < user.at_us)
    positions, ts, like = user.positions[known], user.ts[known], user.is_like[known]
    n_likes = int(like.sum())
    positions, ts, like = (
        positions[-4 * PROFILE_EVENTS :],
        ts[-4 * PROFILE_EVENTS :],
        like[-4 * PROFILE_EVENTS :],
    )
    liked_set = np.unique(positions[like])
    # latest event per post, newest last
    rev_positions = positions[::-1]
    _, first_rev = np.unique(rev_positions, return_index=True)
    last = np.sort(len(positions) - 1 - first_rev)
    seen = positions[last][-config.recent_seen :]
    seen_liked = np.isin(seen, liked_set)
    not_liked = ~np.isin(positions[last], liked_set)
    passed = positions[last][not_liked][-PROFILE_EVENTS:]
    passed_ts = ts[last][not_liked][-PROFILE_EVENTS:]
    liked, liked_ts = positions[like][-PROFILE_EVENTS:], ts[like][-PROFILE_EVENTS:]
    return Taste(
        profile=_weighted_mean(vectors, liked, user.at_us - liked_ts, config.half_life_days),
        recent=vectors[liked[-config.recent :]],
        n_likes=n_likes,
        passed=_weighted_mean(vectors, passed, user.at_us - passed_ts, config.half_life_days),
        seen=vectors[seen],
        seen_liked=seen_liked,
    )


def _weighted_mean(
    vectors: np.ndarray, positions: np.ndarray, age_us: np.ndarray, half_life_days: float
) -> np.ndarray:
    """Unit-length recency-weighted mean of `vectors[positions]` (zeros when empty)."""
    if len(positions) == 0:
        return np.zeros(vectors.shape[1], np.float32)
    weights = np.exp2(-(age_us / DAY_US) / half_life_days).astype(np.float32)
    mean = weights @ vectors[positions]
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm > 0 else mean).astype(np.float32)


def profile_scores(vectors: np.ndarray, taste: Taste) -> np.ndarray:
    """Cosine of every post to the user's profile (a dot product: all vectors are unit)."""
    return vectors @ taste.profile


class EmbeddingFeatures:
    """Feature block: how close each candidate is to the user's taste.

    Absolute cosines drift with the user's history length, so each similarity also comes as a
    z-score and a rank within the request's candidates (what the ranker compares)."""

    CACHED_USERS = 1024  # ~130 KB each (the seen and recent vectors, the similarity)
    names = (
        "emb_cos_profile",
        "emb_cos_passed",
        "emb_cos_contrast",
        "emb_max_recent",
        "emb_mean_recent",
        "emb_sim_last",
        "emb_knn_like_rate",
        "emb_user_likes",
        "emb_cos_profile_z",
        "emb_cos_profile_rank",
        "emb_max_recent_z",
        "emb_max_recent_rank",
    )

    def __init__(self, vectors: np.ndarray, config: TasteConfig) -> None:
        self.vectors = vectors
        self.config = config
        self._cache: OrderedDict[tuple[int, int, int], list] = OrderedDict()
        self._lock = threading.Lock()

    def taste(self, user: UserState) -> Taste:
        return self._entry(user)[0]

    def similarity(self, user: UserState) -> np.ndarray:
        """Cosine of every catalog post to the user's profile."""
        entry = self._entry(user)
        if entry[1] is None:
            entry[1] = profile_scores(self.vectors, entry[0])
        return entry[1]

    def _entry(self, user: UserState) -> list:
        """[taste, catalog similarity or None] of `user`, kept for the latest users.

        The taste depends on the user's events before the request and not otherwise on its
        time (recency weights only rescale one another), so it is keyed by the user and their
        event count and last event: a feed refreshed with no new event reuses it, and any new
        event is a new key. Retrieval and features also share it within a request."""
        key = (user.user_id, len(user.ts), int(user.ts[-1]) if len(user.ts) else 0)
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                self._cache.move_to_end(key)
                return entry
        entry = [user_taste(self.vectors, user, self.config), None]
        with self._lock:
            self._cache[key] = entry
            while len(self._cache) > self.CACHED_USERS:
                self._cache.popitem(last=False)
        return entry

    def __call__(self, req: Request) -> dict[str, np.ndarray]:
        c = req.candidates
        taste = self.taste(req.user)
        cand = self.vectors[c]
        cos = cand @ taste.profile
        if len(taste.recent):
            sims = cand @ taste.recent.T
            recent_max, recent_mean, last = sims.max(axis=1), sims.mean(axis=1), sims[:, -1]
        else:
            recent_max = recent_mean = last = np.zeros(len(c), np.float32)
        passed = cand @ taste.passed
        out = {
            "emb_cos_profile": cos,
            "emb_cos_passed": passed,
            "emb_cos_contrast": cos - passed,
            "emb_max_recent": recent_max,
            "emb_mean_recent": recent_mean,
            "emb_sim_last": last,
            "emb_knn_like_rate": self._knn_like_rate(cand, taste),
            "emb_user_likes": np.full(len(c), float(taste.n_likes), np.float32),
        }
        for name in ("emb_cos_profile", "emb_max_recent"):
            out[f"{name}_z"] = zscore(out[name])
            out[f"{name}_rank"] = rank_share(out[name])
        return {k: np.asarray(v, np.float32) for k, v in out.items()}

    def _knn_like_rate(self, cand: np.ndarray, taste: Taste) -> np.ndarray:
        """Similarity-weighted share liked among the candidate's nearest posts the user saw:
        the user's own verdict on similar posts (seen-but-not-liked ones count against)."""
        if len(taste.seen) == 0:
            return np.full(len(cand), 0.5, np.float32)
        sims = cand @ taste.seen.T
        k = min(self.config.knn, sims.shape[1])
        near = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weight = np.maximum(np.take_along_axis(sims, near, axis=1), 0) + 1e-3
        liked = taste.seen_liked[near].astype(np.float32)
        return (weight * liked).sum(axis=1) / weight.sum(axis=1)


@dataclass(frozen=True)
class NearestToTaste:
    """Candidate source: the `k` allowed posts nearest to the user's liked profile (none for a
    user without likes)."""

    features: EmbeddingFeatures
    k: int

    def __call__(self, req: Request, allowed: np.ndarray) -> np.ndarray:
        if not (self.k and self.features.taste(req.user).n_likes):
            return np.empty(0, np.int64)
        return top_positions(self.features.similarity(req.user), self.k, allowed)
