"""The prior is chosen, not fixed: rolling folds that never learn from a like they are scored
on, the decayed popularity column, a correction kept only when its paired CI over the best
prior is above zero, and a per-user ranking loss for the correction."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from feedlab.models.control import config, train
from feedlab.models.features import DECAY_HALF_LIFE_DAYS, PostStats
from feedlab.models.history import History
from feedlab.models.ranker import TrainingSet, rolling_folds
from feedlab.models.scoring import share_columns
from feedlab.models.training import TrainingRows

from tests.support.ranker_world import T0, world

T = datetime(2024, 3, 1)


def one_cutoff(cutoff: datetime, group: int) -> TrainingRows:
    return TrainingRows(
        np.zeros((2, 1)),
        np.array([True, False]),
        np.array([group, group]),
        ["x"],
        np.ones(2),
        cutoff,
    )


def test_rolling_folds_fit_only_on_label_windows_closed_by_their_held_out_start():
    days = [T + timedelta(days=d) for d in range(30)]
    per_cutoff = [one_cutoff(c, i) for i, c in enumerate(days)]
    folds = rolling_folds(per_cutoff, n_valid=5, folds=3, window_days=7)
    assert [f.cutoffs[0] for f in folds] == [days[15], days[20], days[25]]
    for fold in folds:
        assert len(fold.cutoffs) == 5
        fit_groups = set(fold.fit.groups.tolist())
        assert fit_groups == {
            i for i, c in enumerate(days) if c + timedelta(days=7) <= fold.cutoffs[0]
        }
        assert not fit_groups & set(fold.valid.groups.tolist())
    # a fold with nothing before its label gap is left out
    assert len(rolling_folds(per_cutoff[:12], n_valid=5, folds=3, window_days=7)) == 1


def test_decayed_share_weighs_likes_by_age_and_reads_only_the_30_days_before():
    likes = [(T - timedelta(days=1), 10), (T - timedelta(days=4), 11), (T - timedelta(days=4), 11)]
    likes += [(T - timedelta(days=31), 12), (T, 10), (T + timedelta(days=1), 12)]
    ts, posts = zip(*likes, strict=True)
    history = History.from_arrays(list(ts), list(range(len(ts))), list(posts), ["like"] * len(ts))
    catalog_ids = np.array([12, 11, 10, 99])  # 99: no event at all
    stats = PostStats.at(history, history.posts.lookup(catalog_ids), T)
    weight = {10: 2 ** (-1 / DECAY_HALF_LIFE_DAYS), 11: 2 * 2 ** (-4 / DECAY_HALF_LIFE_DAYS)}
    total = sum(weight.values())
    expected = [0.0, weight[11] / total, weight[10] / total, 0.0]
    np.testing.assert_allclose(stats.decayed_share, expected, rtol=1e-6)


@pytest.fixture(scope="module")
def data() -> TrainingSet:
    history, catalog, profiles = world(n_users=200, n_events=15000)
    return TrainingSet(history, catalog, profiles, T0)


ROLLING = config(
    iterations=30, max_cutoffs=24, text_dim=8, selection_folds=3, min_valid_groups=0, threads=1
)


@pytest.mark.slow
def test_the_prior_is_the_best_candidate_and_the_comparison_is_in_the_meta(
    data: TrainingSet, tmp_path: Path
) -> None:
    meta = train(data, tmp_path, ROLLING, progress=False)
    selection = meta["metrics"]["selection"]
    priors = selection["priors"]
    assert list(priors) == share_columns(("7d", "30d", "all", "decay3d"))
    assert selection["best_prior"] == max(priors, key=priors.__getitem__)
    assert meta["scorer"]["prior"]["column"] == selection["best_prior"]
    assert len(selection["folds"]) == 3
    starts = [f["valid_cutoffs"][0] for f in selection["folds"]]
    assert starts == sorted(starts)
    correction = selection["correction"]
    assert correction["kept"] == (correction["ci95"][0] > 0)
    assert meta["scorer"]["trees"] == (correction["trees"] if correction["kept"] else 0)
    assert (
        meta["metrics"]["valid_hit_rate_at_5_candidates_prior"] == priors[selection["best_prior"]]
    )
    # point-in-time: without the events after T0 the same choice is made
    past = TrainingSet(data.history.until(T0), data.posts, data.users, T0)
    again = train(past, tmp_path / "again", ROLLING, progress=False)
    assert again["metrics"]["selection"] == selection


@pytest.mark.slow
def test_a_correction_that_cannot_reorder_a_user_s_candidates_is_not_kept(
    data: TrainingSet, tmp_path: Path
) -> None:
    """User-level columns are the same for every candidate of a (user, cutoff) group: the
    correction shifts whole groups, its hits equal the prior's, the CI is [0, 0]."""
    blind = replace(ROLLING, ranker_columns=("user_views", "user_likes"))
    meta = train(data, tmp_path, blind, progress=False)
    correction = meta["metrics"]["selection"]["correction"]
    assert correction["difference"] == 0 and correction["ci95"] == [0.0, 0.0]
    assert not correction["kept"]
    assert meta["scorer"]["trees"] == 0
    assert (
        meta["metrics"]["valid_hit_rate_at_5_candidates"]
        == (meta["metrics"]["valid_hit_rate_at_5_candidates_prior"])
    )


@pytest.mark.slow
def test_a_per_user_ranking_loss_trains_on_the_groups_and_serves(
    data: TrainingSet, tmp_path: Path
) -> None:
    """YetiRank refuses a pool without groups; here it trains on the (user, cutoff) groups, and
    the artifact loads and ranks."""
    from feedlab.models.registry import load_model

    yeti = replace(ROLLING, loss="YetiRank", selection_folds=0)
    meta = train(data, tmp_path, yeti, progress=False)
    assert meta["config"]["loss"] == "YetiRank"
    assert meta["metrics"]["trees"] == meta["scorer"]["trees"]
    model = load_model("control", tmp_path, data.history, data.posts, data.users)
    recs = model.recommend(0, T0, 5)
    assert len(recs) == len(set(recs)) == 5
