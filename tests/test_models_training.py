"""HitRate@k among training candidates: the number both arms pick priors and tree counts by."""

from __future__ import annotations

import numpy as np
from feedlab.models.training import (
    TrainingRows,
    fewest_best_trees,
    group_hit_rate,
    hit_rate_by_trees,
)


def rows(groups: list[int], labels: list[bool]) -> TrainingRows:
    return TrainingRows(np.zeros((len(groups), 1)), np.array(labels), np.array(groups), ["x"])


def per_group(scores: np.ndarray, r: TrainingRows, k: int) -> float:
    """The definition, one group at a time."""
    hits = []
    for g in np.unique(r.groups):
        mask = r.groups == g
        top = np.argsort(-scores[mask], kind="stable")[:k]
        hits.append(r.labels[mask][top].any())
    return float(np.mean(hits))


def test_top_k_per_group_with_ties_in_row_order():
    # groups 7 and 3 interleave; in each the positive is 2nd by score (in group 7 it ties with
    # a later row and wins the tie by row order), so both hit at k=2 and neither at k=1
    r = rows([7, 3, 7, 3, 7], [False, True, True, False, False])
    scores = np.array([0.9, 0.1, 0.5, 0.8, 0.5])
    assert group_hit_rate(scores, r, k=1) == 0.0
    assert group_hit_rate(scores, r, k=2) == 1.0
    positive_tied_last = rows([7, 7, 7], [False, False, True])
    assert group_hit_rate(np.array([0.9, 0.5, 0.5]), positive_tied_last, k=2) == 0.0


def test_matches_the_per_group_definition_on_random_rows():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 300))
        groups = rng.integers(0, int(rng.integers(1, 40)), n)
        if trial % 2:
            groups = np.sort(groups)
        scores = rng.integers(0, 4, n).astype(float) if trial % 3 == 0 else rng.random(n)
        r = TrainingRows(np.zeros((n, 1)), rng.random(n) < 0.1, groups, ["x"])
        k = int(rng.integers(1, 7))
        assert group_hit_rate(scores, r, k) == per_group(scores, r, k), trial


def test_hit_rate_by_trees_matches_each_truncated_model():
    from catboost import CatBoost

    rng = np.random.default_rng(1)
    n = 600
    x = rng.random((n, 3))
    labels = rng.random(n) < 0.2 + 0.5 * x[:, 0]
    r = TrainingRows(x, labels, np.repeat(np.arange(60), 10), ["a", "b", "c"])
    prior = rng.normal(size=n)
    params = {"iterations": 25, "depth": 2, "verbose": False, "allow_writing_files": False}
    ranker = CatBoost({**params, "loss_function": "Logloss"}).fit(x, labels.astype(float))
    rates = hit_rate_by_trees(ranker, prior, x, r, step=10)
    assert sorted(rates) == [0, 10, 20, 25]
    assert rates[0] == group_hit_rate(prior, r)
    for trees in (10, 20, 25):
        raw = ranker.predict(x, prediction_type="RawFormulaVal", ntree_end=trees)
        assert rates[trees] == group_hit_rate(prior + raw, r)


def test_fewest_best_trees_breaks_ties_toward_fewer_and_may_keep_the_prior_alone():
    rates = {0: 0.5, 10: 0.4, 20: 0.6, 30: 0.6}
    assert fewest_best_trees(rates) == 20
    assert fewest_best_trees({0: 0.7, 10: 0.4, 20: 0.6}) == 0
