"""The demo world's logging policy: which posts a user is shown, and so can like.

A real feed is logged by the recommender that served it, so the posts a user could like lean
towards their taste. The demo world logs each view by one of two policies:

- browsing (`browsing_picks`): a post among those already created, uniformly at random or
  weighted by a per-post popularity — blind to taste;
- recommender (`taste_aware_picks`): of `RECOMMENDER_POOL` browsed candidates, the one with the
  highest hidden like logit plus `RECOMMENDER_NOISE` x standard Gumbel noise, i.e. a candidate is
  shown with probability proportional to exp(logit / noise) — a recommender that knows the hidden
  model up to noise.

`RECOMMENDER_SHARE` of every user's views come from the recommender. Only numpy here: the CLI
reads the defaults without loading the world's table libraries, and a streaming generator can
call both functions on chunks of views.
"""

from __future__ import annotations

import numpy as np
from feedlab.storage.demo.preferences import PreferenceModel

RECOMMENDER_SHARE = 0.8
"""Share of each user's views the taste-aware recommender logs (0: browsing alone)."""
RECOMMENDER_POOL = 20
"""Browsed candidates it ranks for one view."""
RECOMMENDER_NOISE = 0.5
"""Scale of the Gumbel noise on its score, in logits (0: always the best candidate)."""


def browsing_picks(
    rng: np.random.Generator, eligible: np.ndarray, cum: np.ndarray, explore_share: float
) -> np.ndarray:
    """One pick per entry of `eligible` (any shape; how many posts, in creation order, exist at
    that view): uniform among them with probability `explore_share`, else weighted by
    popularity, whose running sum in creation order is `cum`. Returns positions in creation
    order (0 where nothing is eligible)."""
    uniform_pick = np.floor(rng.random(eligible.shape) * eligible).astype(np.int64)
    target = rng.random(eligible.shape) * cum[np.maximum(eligible - 1, 0)]
    popular_pick = np.minimum(np.searchsorted(cum, target, side="right"), eligible - 1)
    explore = rng.random(eligible.shape) < explore_share
    return np.maximum(np.where(explore, uniform_pick, popular_pick), 0)


def taste_aware_picks(
    model: PreferenceModel,
    rng: np.random.Generator,
    user_pos: np.ndarray,
    at: np.ndarray,
    pools: np.ndarray,
    noise: float,
) -> np.ndarray:
    """The logging recommender: for view i (user position `user_pos[i]` at `at[i]`) the post
    position of `pools[i]` (views x candidates) with the highest hidden like logit plus `noise`
    x standard Gumbel noise, i.e. drawn with probability proportional to exp(logit / noise).
    Vectorised over views; call it on chunks to bound memory (views x candidates floats)."""
    score = model.logit_at(user_pos[:, None], pools, np.asarray(at)[:, None])
    if noise > 0:
        score = score + noise * rng.gumbel(size=score.shape)
    return pools[np.arange(len(pools)), np.argmax(score, axis=1)]
