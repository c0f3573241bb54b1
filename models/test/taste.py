"""A user's taste in embedding space, read point-in-time from the likes in a `UserState`.

The user is the recency-weighted mean of the unit vectors of the posts they liked before `at`
(weight halves every `half_life_days`), plus their latest likes kept one by one (a user often
likes near neighbours of what they liked last). Nothing is stored per user: the state comes
from the shared History on every request, so a like is in the taste as soon as the History
has it, and a like at or after `at` can never be.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.features import DAY_US, Request, UserState

RECENT_LIKES = 10


@dataclass(frozen=True)
class TasteConfig:
    half_life_days: float = 30.0
    recent: int = RECENT_LIKES


@dataclass(frozen=True)
class Taste:
    """`profile`: unit vector (zeros for a user without likes); `recent`: latest liked
    vectors, newest last."""

    profile: np.ndarray
    recent: np.ndarray
    n_likes: int


def user_taste(vectors: np.ndarray, user: UserState, config: TasteConfig) -> Taste:
    """The taste of `user` from likes strictly before `user.at_us` (UserState holds no more)."""
    dim = vectors.shape[1]
    like = user.is_like & (user.positions >= 0) & (user.ts < user.at_us)
    liked, ts = user.positions[like], user.ts[like]
    if len(liked) == 0:
        return Taste(np.zeros(dim, np.float32), np.empty((0, dim), np.float32), 0)
    age_days = (user.at_us - ts) / DAY_US
    weights = np.exp2(-age_days / config.half_life_days).astype(np.float32)
    profile = weights @ vectors[liked]
    norm = float(np.linalg.norm(profile))
    profile = profile / norm if norm > 0 else profile
    return Taste(profile.astype(np.float32), vectors[liked[-config.recent :]], len(liked))


def profile_scores(vectors: np.ndarray, taste: Taste) -> np.ndarray:
    """Cosine of every post to the user's profile (a dot product: all vectors are unit)."""
    return vectors @ taste.profile


class EmbeddingFeatures:
    """Feature block: how close each candidate is to the user's taste.

    Absolute cosines drift with the user's history length, so each similarity also comes as a
    z-score and a rank within the request's candidates (what the ranker compares)."""

    def __init__(self, vectors: np.ndarray, config: TasteConfig) -> None:
        self.vectors = vectors
        self.config = config

    def taste(self, user: UserState) -> Taste:
        return user_taste(self.vectors, user, self.config)

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
        out = {
            "emb_cos_profile": cos,
            "emb_max_recent": recent_max,
            "emb_mean_recent": recent_mean,
            "emb_sim_last": last,
            "emb_user_likes": np.full(len(c), float(taste.n_likes), np.float32),
        }
        for name in ("emb_cos_profile", "emb_max_recent"):
            out[f"{name}_z"] = _zscore(out[name])
            out[f"{name}_rank"] = _rank(out[name])
        return {k: np.asarray(v, np.float32) for k, v in out.items()}


def _zscore(x: np.ndarray) -> np.ndarray:
    if len(x) < 2:
        return np.zeros(len(x), np.float32)
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 0 else np.zeros(len(x), np.float32)


def _rank(x: np.ndarray) -> np.ndarray:
    """0 for the highest value, 1 for the lowest (share of candidates ranked above)."""
    n = len(x)
    out = np.empty(n, np.float32)
    out[np.argsort(-x, kind="stable")] = np.arange(n) / max(1, n - 1)
    return out
