"""The popular fallback, the random baseline and the registry."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from feedlab.models.base import Event, Recommender
from feedlab.models.history import History
from feedlab.models.popular import PopularRecommender, RandomRecommender
from feedlab.models.registry import load_model

T = datetime(2024, 1, 1)


def world() -> History:
    """Post 1 was popular long ago, post 2 is popular this week, posts 3-4 are niche."""
    ts, users, posts, actions = [], [], [], []
    for u in range(10):
        ts.append(T), users.append(u), posts.append(1), actions.append("like")
    for u in range(5):
        ts.append(T + timedelta(days=60)), users.append(u), posts.append(2), actions.append("like")
    for p in (3, 4):
        ts.append(T + timedelta(days=61)), users.append(20), posts.append(p), actions.append("like")
    ts.append(T + timedelta(days=61)), users.append(21), posts.append(5), actions.append("view")
    return History.from_arrays(ts, users, posts, actions)


def test_recent_window_beats_all_time_and_excludes_liked():
    h = world()
    at = T + timedelta(days=62)
    recent = PopularRecommender(h, window=timedelta(days=30))
    all_time = PopularRecommender(h, window=None)
    assert recent.recommend(99, at, 2)[0] == 2
    assert all_time.recommend(99, at, 1) == [1]
    assert 2 not in recent.recommend(0, at, 5)
    assert 1 not in recent.recommend(0, at, 5)
    recs = recent.recommend(99, at, 10)
    assert len(recs) == len(set(recs)) == 5


def test_popular_is_point_in_time():
    h = world()
    before = PopularRecommender(h).recommend(99, T + timedelta(days=1), 5)
    assert before == [1]  # posts 2-5 did not exist yet
    h.add([])
    assert isinstance(PopularRecommender(h), Recommender)


def test_cached_ranking_follows_new_events_and_the_window():
    """The ranking is reused between requests, yet a like that arrives, or one that leaves
    the window, changes the next list, and a like at `at` itself does not count."""
    h = world()
    at = T + timedelta(days=62)
    model = PopularRecommender(h, window=timedelta(days=30))
    assert model.recommend(99, at, 5) == [2, 3, 4, 1, 5]
    h.add([Event(at - timedelta(seconds=1), u, 4, "like") for u in range(30, 36)])
    h.add([Event(at, u, 3, "like") for u in range(30, 33)])
    assert model.recommend(99, at, 5) == [4, 2, 3, 1, 5]
    later = at + timedelta(days=29, hours=12)  # the likes of days 60-61 left the window
    assert model.recommend(99, later, 5) == [4, 3, 1, 2, 5]


def test_exclude_and_cold_start_share_the_list():
    h = world()
    at = T + timedelta(days=62)
    model = PopularRecommender(h)
    assert model.recommend(1234, at, 3) == model.recommend(5678, at, 3)
    assert 2 not in model.recommend(1234, at, 3, exclude=[2])
    # offline evaluation passes the seen posts as an id array
    assert model.recommend(1234, at, 2, exclude=np.array([2, 1])) == [3, 4]


def test_random_is_reproducible_and_valid():
    h = world()
    at = T + timedelta(days=62)
    model = RandomRecommender(h, seed=3)
    first = model.recommend(0, at, 3)
    assert first == model.recommend(0, at, 3)
    assert not {1, 2} & set(first)
    assert len(set(first)) == len(first)
    assert set(model.recommend(99, T + timedelta(days=1), 5)) == {1}


def test_registry_names_and_errors(tmp_path):
    h = world()
    assert load_model("popular", None, h).name == "popular"
    assert load_model("popular-all", None, h).window is None
    assert load_model("random", None, h).name == "random"
    with pytest.raises(ValueError, match="model: unknown model 'nope'"):
        load_model("nope", None, h)
    with pytest.raises(ValueError, match="artifact"):
        load_model("control", None, h)
    with pytest.raises(FileNotFoundError, match=r"meta\.json"):
        load_model("control", tmp_path, h)
