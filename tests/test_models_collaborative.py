"""Collaborative scores shared by both arms: EASE fitted point-in-time, its
closed form, and the features and candidates it gives a request."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from feedlab.models.candidates import DailyCoVisitation
from feedlab.models.collaborative import (
    COLLABORATIVE_NAMES,
    Collaborative,
    CollaborativeConfig,
    Ease,
)
from feedlab.models.features import FeatureBuilder, PostTable, TextSVD
from feedlab.models.history import History

from tests.support.ranker_world import T0, world

T = datetime(2024, 3, 1, 12)


def likes_history(pairs: list[tuple[int, int]], at: datetime) -> History:
    """Each (user, post) liked at `at`."""
    users, posts = zip(*pairs, strict=True)
    return History.from_arrays([at] * len(pairs), list(users), list(posts), ["like"] * len(pairs))


def test_ease_weights_are_the_closed_form_over_liked_posts():
    pairs = [(0, 1), (0, 2), (1, 1), (1, 2), (1, 3), (2, 3), (2, 4), (3, 1), (3, 4)]
    history = likes_history(pairs, T - timedelta(hours=1))
    catalog = np.array([1, 2, 3, 4, 5])  # 5: never liked
    l2 = 2.0
    fit = Ease.fit(history, T, catalog, neighbours=10, l2=l2)
    x = np.zeros((4, 4))
    for u, p in pairs:
        x[u, p - 1] = 1
    p_inv = np.linalg.inv(x.T @ x + l2 * np.eye(4))
    expected = -p_inv / np.diag(p_inv)[None, :]
    np.fill_diagonal(expected, 0)
    weights = fit.similarity.toarray()
    np.testing.assert_allclose(weights[:4, :4], expected, rtol=1e-4, atol=1e-6)
    assert not weights[4].any() and not weights[:, 4].any()
    # a user who liked posts 1 and 2 is scored by the sum of their rows
    np.testing.assert_allclose(fit.scores(np.array([0, 1])), weights[[0, 1]].sum(axis=0))


def test_ease_sees_only_likes_before_the_cutoff():
    before = [(0, 1), (0, 2), (1, 2), (1, 3)]
    history = likes_history(before, T - timedelta(days=1))
    late = History.from_arrays(  # the same likes, then two at and after the cutoff
        [T - timedelta(days=1)] * 4 + [T, T + timedelta(hours=2)],
        [0, 0, 1, 1, 2, 2],
        [1, 2, 2, 3, 1, 3],
        ["like"] * 6,
    )
    catalog = np.array([1, 2, 3])
    np.testing.assert_array_equal(
        Ease.fit(history, T, catalog, l2=1.0).similarity.toarray(),
        Ease.fit(late, T, catalog, l2=1.0).similarity.toarray(),
    )
    assert not np.array_equal(
        Ease.fit(late, T + timedelta(days=1), catalog, l2=1.0).similarity.toarray(),
        Ease.fit(late, T, catalog, l2=1.0).similarity.toarray(),
    )


def test_a_request_gets_ease_candidates_and_scores_standardised_within_it():
    history, catalog, profiles = world(n_users=60, n_events=4000)
    table = PostTable.build(catalog, TextSVD(4).fit(catalog.texts))
    covisit = DailyCoVisitation(history, catalog.post_ids, 20)
    config = CollaborativeConfig(ease_candidates=30)
    collab = Collaborative.build(history, catalog.post_ids, covisit, config)
    builder = FeatureBuilder(history, table, profiles, extra_blocks=[collab])
    user = int(history.events_between(None, T0).user_ids[-1])
    req = builder.request(user, T0)
    allowed = np.ones(len(catalog), bool)
    allowed[req.user.liked] = False
    req.candidates = collab.source(req, allowed)
    assert 0 < len(req.candidates) <= 30
    assert not np.isin(req.candidates, req.user.liked).any()
    matrix = builder.matrix(req, list(COLLABORATIVE_NAMES))
    ease, ease_z, ease_rank = matrix[:, 0], matrix[:, 1], matrix[:, 2]
    assert np.all(np.diff(ease) <= 1e-6)  # the source gives its best first
    np.testing.assert_allclose(ease_z.mean(), 0, atol=1e-5)
    assert ease_rank[0] == 0 and ease_rank.max() == 1


def test_ease_solves_only_over_the_most_liked_posts_when_capped():
    pairs = [(0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (2, 3)]  # 1: 3 likes, 2: 2, 3: 1
    history = likes_history(pairs, T - timedelta(hours=1))
    catalog = np.array([1, 2, 3])
    weights = Ease.fit(history, T, catalog, l2=1.0, max_posts=2).similarity.toarray()
    assert not weights[2].any() and not weights[:, 2].any()
    x = np.array([[1, 1], [1, 1], [1, 0]], float)  # posts 1 and 2 only
    p_inv = np.linalg.inv(x.T @ x + np.eye(2))
    np.testing.assert_allclose(weights[0, 1], -p_inv[0, 1] / p_inv[1, 1], rtol=1e-4)
