"""The hidden preference model of the demo world: who likes what, and how strongly.

    logit P(like | user u, post i, time t) =
          base_logit
        + demo_topic[group(u), topic(i)]                 # demographics x topic (age band x gender)
        + user_topic[u, topic(i)]                        # personal topic affinity
        + subtheme_effect * [subtheme(i) == taste(u, topic(i))]   # within-topic taste
        + user_bias[u] + post_quality[i]
        - freshness * min(age of i at t, 14 days) / 14 days

`taste(u, topic)` is the one sub-theme of each topic a user prefers. Sub-themes are balanced
across users and independent of demographics, so a model that sees topic and profile only
cannot tell them apart; they show only in the words of a post (see `storage.demo.texts`).

The traffic simulator reuses this class: rebuild it with
`storage.demo.world.WorldSpec.load(path).preference_model()` (or `World.build(spec).model`) and
call `like_probability(user_ids, post_ids, at)` with arrays; the same spec gives the same model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np

AGE_BANDS = (25, 40)  # <25, 25–39, 40+
GENDERS = ("F", "M")
FRESHNESS_DAYS = 14.0


@dataclass(frozen=True)
class PreferenceParams:
    """The explicit knobs of the hidden model (logit scale)."""

    base_logit: float = -2.3
    demo_topic_sigma: float = 0.7
    user_topic_sigma: float = 0.3
    subtheme_effect: float = 1.2
    user_bias_sigma: float = 0.3
    post_quality_sigma: float = 0.3
    freshness: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


def demographic_group(age: np.ndarray, gender: np.ndarray) -> np.ndarray:
    """Group index 0..5 = age band (<25, 25–39, 40+) x gender (F, M)."""
    band = np.searchsorted(np.asarray(AGE_BANDS), np.asarray(age), side="right")
    return band * len(GENDERS) + (np.asarray(gender) == "M").astype(np.int64)


@dataclass
class PreferenceModel:
    """Arrays indexed by position; `user_ids`/`post_ids` map external ids to positions."""

    params: PreferenceParams
    user_ids: np.ndarray
    post_ids: np.ndarray
    user_group: np.ndarray  # (n_users,)
    user_topic: np.ndarray  # (n_users, n_topics)
    user_taste: np.ndarray  # (n_users, n_topics): preferred sub-theme index per topic
    user_bias: np.ndarray  # (n_users,)
    demo_topic: np.ndarray  # (n_groups, n_topics)
    post_topic: np.ndarray  # (n_posts,) topic index
    post_subtheme: np.ndarray  # (n_posts,)
    post_quality: np.ndarray  # (n_posts,)
    post_created: np.ndarray  # (n_posts,) datetime64[s]
    topics: list[str]

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        params: PreferenceParams,
        *,
        user_ids: np.ndarray,
        age: np.ndarray,
        gender: np.ndarray,
        post_ids: np.ndarray,
        post_topic: list[str],
        post_subtheme: np.ndarray,
        post_created: np.ndarray,
        subthemes_per_topic: dict[str, int],
    ) -> PreferenceModel:
        """Draw the hidden parameters for a given set of users and posts."""
        topics = sorted(subthemes_per_topic)
        n_users, n_topics = len(user_ids), len(topics)
        groups = len(GENDERS) * (len(AGE_BANDS) + 1)
        taste = np.zeros((n_users, n_topics), dtype=np.int64)
        for k, topic in enumerate(topics):  # balanced: each sub-theme preferred equally often
            taste[rng.permutation(n_users), k] = np.arange(n_users) % subthemes_per_topic[topic]
        topic_index = {t: k for k, t in enumerate(topics)}
        return cls(
            params=params,
            user_ids=np.asarray(user_ids, dtype=np.int64),
            post_ids=np.asarray(post_ids, dtype=np.int64),
            user_group=demographic_group(age, gender),
            user_topic=rng.normal(0, params.user_topic_sigma, (n_users, n_topics)),
            user_taste=taste,
            user_bias=rng.normal(0, params.user_bias_sigma, n_users),
            demo_topic=rng.normal(0, params.demo_topic_sigma, (groups, n_topics)),
            post_topic=np.asarray([topic_index[t] for t in post_topic], dtype=np.int64),
            post_subtheme=np.asarray(post_subtheme, dtype=np.int64),
            post_quality=rng.normal(0, params.post_quality_sigma, len(post_ids)),
            post_created=np.asarray(post_created, dtype="datetime64[s]"),
            topics=topics,
        )

    def user_index(self, user_ids) -> np.ndarray:
        return _positions(self.user_ids, user_ids, "user")

    def post_index(self, post_ids) -> np.ndarray:
        return _positions(self.post_ids, post_ids, "post")

    def prefers(self, user_ids, post_ids) -> np.ndarray:
        """True where the post's sub-theme is the user's preferred one in its topic."""
        u, p = self.user_index(user_ids), self.post_index(post_ids)
        return self.user_taste[u, self.post_topic[p]] == self.post_subtheme[p]

    def like_logit(self, user_ids, post_ids, at) -> np.ndarray:
        return self.logit_at(self.user_index(user_ids), self.post_index(post_ids), at)

    def logit_at(self, u: np.ndarray, p: np.ndarray, at) -> np.ndarray:
        """`like_logit` by positions (not ids) in any broadcastable shapes, e.g. (views, 1)
        users against (views, candidates) posts: what a generator scoring millions of pairs
        calls without the id lookups."""
        topic = self.post_topic[p]
        at = np.asarray(at, dtype="datetime64[s]")
        age_days = (at - self.post_created[p]).astype(np.float64) / 86400.0
        stale = np.clip(age_days, 0.0, FRESHNESS_DAYS) / FRESHNESS_DAYS
        pr = self.params
        return (
            pr.base_logit
            + self.demo_topic[self.user_group[u], topic]
            + self.user_topic[u, topic]
            + pr.subtheme_effect * (self.user_taste[u, topic] == self.post_subtheme[p])
            + self.user_bias[u]
            + self.post_quality[p]
            - pr.freshness * stale
        )

    def like_probability(self, user_ids, post_ids, at: datetime | np.ndarray) -> np.ndarray:
        """P(like | view) for aligned arrays of user ids and post ids at time(s) `at` (naive UTC;
        a scalar or an array broadcast against the ids)."""
        return 1.0 / (1.0 + np.exp(-self.like_logit(user_ids, post_ids, at)))


def _positions(known: np.ndarray, ids, what: str) -> np.ndarray:
    """Positions of `ids` in `known` (which is sorted); unknown ids raise KeyError."""
    ids = np.asarray(ids, dtype=np.int64)
    pos = np.searchsorted(known, ids)
    pos = np.clip(pos, 0, len(known) - 1)
    bad = known[pos] != ids
    if bad.any():
        raise KeyError(f"unknown {what} id(s) {ids[bad][:5].tolist()} in the demo world")
    return pos
