"""Training rows under a budget: exactly the eligible (user, cutoff) groups when they fit, a
seeded sample of whole groups when they do not, held in one buffer that hold-outs view without
copying; and training loads only the events before T0."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from feedlab.analysis.offline.evaluate import median_time, stored_median_time
from feedlab.models import control
from feedlab.models.history import History
from feedlab.models.ranker import Pipeline, Ranker, rows_per_cutoff
from feedlab.models.training import TrainingRows, cutoffs
from feedlab.storage.schema import feed
from sqlalchemy import insert

from tests.support.ranker_world import T0, world

COLUMNS = ["post_like_share_30d", "user_likes", "user_topic_likes"]


@pytest.fixture(scope="module")
def setting() -> tuple[Pipeline, list[datetime]]:
    history, catalog, profiles = world(seed=2, n_users=120, n_events=9000)
    ranker = Ranker(control.config()).fit_tables(catalog, profiles)
    past = history.until(T0)
    points = cutoffs(past, T0, ranker.config)[-6:]
    return ranker.pipeline(past, catalog, ranker.users_), points


def eligible(pipeline: Pipeline, cutoff: datetime) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The definition, one user at a time: user -> (feature rows, labels) of every user with
    an event before the cutoff, a like in the week after it and a liked post among their
    candidates."""
    history = pipeline.builder.history
    window = history.events_between(cutoff, cutoff + timedelta(days=7))
    out = {}
    for user in np.unique(window.user_ids[window.is_like]).tolist():
        req = pipeline.request(user, cutoff, True, None)
        liked = window.post_ids[window.is_like & (window.user_ids == user)]
        labels = np.isin(pipeline.catalog.post_ids[req.candidates], liked)
        if len(req.user.ts) and labels.any():
            out[user] = (pipeline.builder.matrix(req, COLUMNS), labels)
    return out


def test_rows_within_the_budget_are_every_eligible_group_in_user_order(setting):
    pipeline, points = setting
    per_cutoff = rows_per_cutoff(pipeline, points, COLUMNS, 7, 10_000_000, progress=False)
    assert [r.cutoff for r in per_cutoff] == points
    next_group = 0
    for rows in per_cutoff:
        expected = eligible(pipeline, rows.cutoff)
        assert rows.users is not None
        assert np.unique(rows.users).tolist() == sorted(expected)
        assert np.array_equal(rows.matrix, np.vstack([m for m, _ in expected.values()]))
        assert np.array_equal(rows.labels, np.concatenate([lb for _, lb in expected.values()]))
        assert rows.groups.min() == next_group and np.all(np.diff(rows.groups) >= 0)
        next_group = rows.groups.max() + 1


def test_a_binding_budget_samples_whole_groups_in_every_cutoff_the_same_for_a_seed(setting):
    pipeline, points = setting
    everything = rows_per_cutoff(pipeline, points, COLUMNS, 7, 10_000_000, progress=False)
    budget = sum(len(r.labels) for r in everything) // 3
    sampled = rows_per_cutoff(pipeline, points, COLUMNS, 7, budget, seed=1, progress=False)
    assert sum(len(r.labels) for r in sampled) <= budget
    assert [r.cutoff for r in sampled] == points
    for rows, full in zip(sampled, everything, strict=True):
        assert rows.users is not None and full.users is not None
        users = np.unique(rows.users)
        assert 0 < len(users) < len(np.unique(full.users))
        for user in users.tolist():  # each sampled group is the whole group, positive included
            mine, theirs = rows.users == user, full.users == user
            assert np.array_equal(rows.matrix[mine], full.matrix[theirs])
            assert rows.labels[mine].any()
    again = rows_per_cutoff(pipeline, points, COLUMNS, 7, budget, seed=1, progress=False)
    other = rows_per_cutoff(pipeline, points, COLUMNS, 7, budget, seed=2, progress=False)
    assert np.array_equal(TrainingRows.concat(again).users, TrainingRows.concat(sampled).users)
    assert not np.array_equal(TrainingRows.concat(other).users, TrainingRows.concat(sampled).users)


def test_consecutive_cutoffs_join_without_a_copy_and_others_by_copying(setting):
    pipeline, points = setting
    per_cutoff = rows_per_cutoff(pipeline, points, COLUMNS, 7, 10_000_000, progress=False)
    joined = TrainingRows.concat(per_cutoff[1:4])
    assert np.shares_memory(joined.matrix, per_cutoff[2].matrix)
    assert np.shares_memory(joined.groups, per_cutoff[1].groups)
    assert np.array_equal(joined.matrix, np.vstack([r.matrix for r in per_cutoff[1:4]]))
    gap = TrainingRows.concat([per_cutoff[0], per_cutoff[2]])
    assert not np.shares_memory(gap.matrix, per_cutoff[0].matrix)
    assert np.array_equal(gap.labels, np.concatenate([per_cutoff[0].labels, per_cutoff[2].labels]))


@pytest.mark.parametrize("n_views", [5, 6])
def test_the_default_t0_read_in_sql_is_the_median_view_time(engine, n_views):
    start = datetime(2024, 3, 1)
    times = [start + timedelta(hours=7 * i, microseconds=3) for i in range(n_views)]
    rows = [
        {"timestamp": t, "user_id": 1, "post_id": 2, "action": "view", "target": 0} for t in times
    ]
    rows.append({"timestamp": start, "user_id": 1, "post_id": 2, "action": "like", "target": None})
    with engine.begin() as conn:
        conn.execute(insert(feed), rows)
    expected = median_time(History.from_engine(engine))
    assert stored_median_time(engine) == expected
    assert expected == times[(n_views - 1) // 2] + (n_views % 2 == 0) * timedelta(hours=3.5)
