"""History: point-in-time queries, online adds in any order, the database loader."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from feedlab.models.base import Event
from feedlab.models.history import History
from feedlab.storage.schema import feed
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

T = datetime(2024, 1, 1)


def day(n: float) -> datetime:
    return T + timedelta(days=n)


def small() -> History:
    return History.from_arrays(
        [day(0), day(1), day(2), day(2), day(3)],
        [1, 1, 1, 2, 2],
        [10, 11, 12, 10, 13],
        ["view", "like", "like", "like", "view"],
    )


def test_queries_are_strictly_before_at():
    h = small()
    assert h.liked_before(1, day(2)).tolist() == [11]
    assert h.liked_before(1, day(2) + timedelta(microseconds=1)).tolist() == [11, 12]
    _, posts, like = h.user_events_before(1, day(9))
    assert posts[~like].tolist() == [10]
    assert h.seen_before(2, day(3)).tolist() == [10]
    _, _, like = h.user_events_before(2, day(9))
    assert (int((~like).sum()), int(like.sum())) == (1, 1)
    assert h.liked_before(99, day(9)).tolist() == []


def test_post_counts_overall_and_window_aligned_to_ids():
    h = small()
    views, likes = h.post_counts(day(2.5), post_ids=[10, 11, 12, 13, 777])
    assert views.tolist() == [1, 0, 0, 0, 0]
    assert likes.tolist() == [1, 1, 1, 0, 0]
    _, recent = h.post_counts(day(2.5), timedelta(days=1), post_ids=[10, 11, 12])
    assert recent.tolist() == [1, 0, 1]


def test_add_out_of_order_is_seen_only_after_its_time():
    h = small()
    h.add([Event(day(5), 1, 14, "like"), Event(day(0.5), 1, 15, "like")])
    assert h.liked_before(1, day(2)).tolist() == [15, 11]
    assert 14 not in h.liked_before(1, day(5)).tolist()
    assert h.liked_before(1, day(6)).tolist() == [15, 11, 12, 14]
    assert h.post_counts(day(1), post_ids=[15])[1].tolist() == [1]
    assert sorted(h.users_before(day(1)).tolist()) == [1]


def test_bad_action_names_the_field():
    with pytest.raises(ValueError, match="action"):
        History.from_arrays([day(0)], [1], [1], ["click"])
    with pytest.raises(ValueError, match="action"):
        small().add([Event(day(0), 1, 1, "click")])


def test_until_drops_later_events():
    h = small().until(day(2))
    assert len(h) == 2
    assert h.time_range() == (day(0), day(1))


events_strategy = st.lists(
    st.tuples(
        st.integers(0, 500),  # hours
        st.integers(1, 5),
        st.integers(1, 8),
        st.sampled_from(["view", "like"]),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(events_strategy, st.integers(0, 60), st.integers(0, 520))
def test_matches_brute_force_whatever_the_arrival_order(events, split, at_hours):
    """Built from arrays, then fed the rest in reverse order (with consolidation forced),
    every answer equals a brute-force scan of the events before `at`."""
    evs = [Event(T + timedelta(hours=h), u, p, a) for h, u, p, a in events]
    split = min(split, len(evs))
    base = evs[:split]
    h = History.from_events(base) if base else History()
    h.DELTA_MIN = 3
    h.add(list(reversed(evs[split:])))
    at = T + timedelta(hours=at_hours)
    before = [e for e in evs if e.timestamp < at]
    for u in range(1, 6):
        liked = sorted(e.post_id for e in before if e.user_id == u and e.action == "like")
        viewed = sorted(e.post_id for e in before if e.user_id == u and e.action == "view")
        assert sorted(h.liked_before(u, at).tolist()) == liked
        _, posts, like = h.user_events_before(u, at)
        assert sorted(posts[~like].tolist()) == viewed
    ids = list(range(1, 9))
    views, likes = h.post_counts(at, timedelta(hours=48), post_ids=ids)
    recent = [e for e in before if e.timestamp >= at - timedelta(hours=48)]
    assert likes.tolist() == [
        sum(e.post_id == p and e.action == "like" for e in recent) for p in ids
    ]
    assert views.tolist() == [
        sum(e.post_id == p and e.action == "view" for e in recent) for p in ids
    ]
    matrix = h.interaction_matrix(at).toarray()
    assert matrix.sum() == sum(e.action == "like" for e in before)


def test_from_engine_reads_feed_until(engine):
    rows = [
        {"timestamp": day(0), "user_id": 1, "post_id": 10, "action": "view", "target": 1},
        {"timestamp": day(0), "user_id": 1, "post_id": 10, "action": "like", "target": None},
        {"timestamp": day(3), "user_id": 2, "post_id": 11, "action": "like", "target": None},
    ]
    with engine.begin() as conn:
        conn.execute(insert(feed), rows)
    h = History.from_engine(engine)
    assert len(h) == 3
    assert h.liked_before(1, day(1)).tolist() == [10]
    early = History.from_engine(engine, until=day(1))
    assert len(early) == 2
    assert early.liked_before(2, day(9)).tolist() == []
    assert np.array_equal(History.from_engine(engine, until=day(-1)).posts.ids, [])


def test_version_at_changes_only_with_events_before_the_times():
    h = small()
    times = [day(2.5), day(1.5)]
    key = h.version_at(times)
    h.add([Event(day(4), 1, 10, "like")])
    assert h.version_at(times) == key
    h.add([Event(day(2), 3, 10, "like")])  # late, but before day 2.5
    assert h.version_at(times) != key


@pytest.mark.parametrize("delta_min", [3_000, 400])
def test_one_event_adds_interleaved_with_queries_stay_exact(delta_min):
    """The gateway's pattern: `POST /feed` adds one event between requests. Thousands of
    single-event adds (in shuffled time order, past the delta's growth and, with a small
    `DELTA_MIN`, across consolidations) answer every query like a brute-force scan, and an
    answer taken earlier is not changed by later adds."""
    rng = np.random.default_rng(0)
    n = 2_500
    hours = rng.integers(0, 1_000, n)
    users, posts = rng.integers(1, 30, n), rng.integers(1, 50, n)
    likes = rng.random(n) < 0.3
    evs = [
        Event(T + timedelta(hours=int(h)), int(u), int(p), "like" if lk else "view")
        for h, u, p, lk in zip(hours, users, posts, likes, strict=True)
    ]
    h = History.from_events(evs[:200])
    h.DELTA_MIN = delta_min
    kept: list[tuple[np.ndarray, list[int]]] = []
    for i in range(200, n):
        h.add([evs[i]])
        if i % 97:
            continue
        at = T + timedelta(hours=int(rng.integers(0, 1_000)))
        before = [e for e in evs[: i + 1] if e.timestamp < at]
        for u in (1, 7, 29):
            liked = sorted(e.post_id for e in before if e.user_id == u and e.action == "like")
            assert sorted(h.liked_before(u, at).tolist()) == liked
        ids = list(range(1, 50))
        views, like_counts = h.post_counts(at, post_ids=ids)
        assert views.tolist() == [
            sum(e.post_id == p and e.action == "view" for e in before) for p in ids
        ]
        assert like_counts.tolist() == [
            sum(e.post_id == p and e.action == "like" for e in before) for p in ids
        ]
        window = h.events_between(None, at)
        assert np.all(np.diff(window.ts) >= 0)
        kept.append((window.post_ids, [e.post_id for e in before]))
    assert len(h) == n
    for answer, expected in kept:
        assert sorted(answer.tolist()) == sorted(expected)


def same_answers(a: History, b: History, users: list[int], posts: list[int], times: list) -> None:
    """Every point-in-time query gives the same answer on `a` and `b`."""
    assert len(a) == len(b) and a.time_range() == b.time_range()
    for at in times:
        for u in users:
            for x, y in zip(a.user_events_before(u, at), b.user_events_before(u, at), strict=True):
                assert x.tolist() == y.tolist()
        for window in (None, timedelta(days=2)):
            for x, y in zip(
                a.post_counts(at, window, posts), b.post_counts(at, window, posts), strict=True
            ):
                assert x.tolist() == y.tolist()
        ea, eb = a.events_between(None, at), b.events_between(None, at)
        for field in ("ts", "user_ids", "post_ids", "is_like"):
            assert getattr(ea, field).tolist() == getattr(eb, field).tolist()
        assert sorted(a.users_before(at).tolist()) == sorted(b.users_before(at).tolist())
        (ta, pa), (tb, pb) = a.likes_between(day(1), at), b.likes_between(day(1), at)
        assert sorted(zip(ta.tolist(), a.posts.ids[pa].tolist(), strict=True)) == sorted(
            zip(tb.tolist(), b.posts.ids[pb].tolist(), strict=True)
        )
        ma, mb = a.interaction_matrix(at), b.interaction_matrix(at)
        pa, pb = a.posts.lookup(posts), b.posts.lookup(posts)
        ua, ub = a.users.lookup(users), b.users.lookup(users)
        for i in range(len(users)):
            for j in range(len(posts)):
                va = ma[ua[i], pa[j]] if ua[i] >= 0 and pa[j] >= 0 else 0
                vb = mb[ub[i], pb[j]] if ub[i] >= 0 and pb[j] >= 0 else 0
                assert va == vb


def random_events(n: int, seed: int = 0) -> list[Event]:
    """Events in random time order, times with microseconds, some tied."""
    rng = np.random.default_rng(seed)
    us = rng.integers(0, 10 * 86_400_000_000, n)
    us[::7] = us[0]  # ties: order among equal times must be kept
    columns = us, rng.integers(1, 40, n), rng.integers(100, 130, n), rng.choice(["view", "like"], n)
    return [
        Event(T + timedelta(microseconds=int(t)), int(u), int(p), str(a))
        for t, u, p, a in zip(*columns, strict=True)
    ]


def test_streamed_from_engine_equals_the_history_of_the_same_rows(engine, monkeypatch):
    """Chunks of 37 rows and a per-user order built 64 events at a time give the History
    that the rows as arrays give (times to the microsecond, ties in id order)."""
    from feedlab.models import history as module

    monkeypatch.setattr(module, "CHUNK_ROWS", 37)
    monkeypatch.setattr(module, "ORDER_CHUNK", 64)
    events = random_events(600)
    rows = [
        {"timestamp": e.timestamp, "user_id": e.user_id, "post_id": e.post_id, "action": e.action}
        for e in events
    ]
    with engine.begin() as conn:
        conn.execute(insert(feed), rows)
    streamed = History.from_engine(engine)
    expected = History.from_events(events)
    times = [day(n) for n in (0, 0.3, 2.5, 5, 9.99, 11)]
    same_answers(streamed, expected, list(range(0, 41)), list(range(99, 131)), times)
    assert streamed.memory()["base"] < 600 * 24  # bytes per event, all arrays included
    early = History.from_engine(engine, until=day(5), through_id=400)
    kept = [e for e in events[:400] if e.timestamp < day(5)]
    same_answers(early, History.from_events(kept), list(range(1, 40)), [100, 110, 129], times)


def test_a_saved_history_maps_read_only_and_takes_events_in_memory(tmp_path):
    """`open` maps the saved arrays (nothing copied, nothing writable); adds after it land in
    the recent store and the delta, and every answer equals the History of all events."""
    events = random_events(500, seed=1)
    saved = History.from_events(events[:400])
    saved.save(tmp_path)
    opened = History.open(tmp_path)
    base = opened._base
    assert isinstance(base.ts.base, np.memmap) or isinstance(base.ts, np.memmap)
    assert not base.ts.flags.writeable and not base.by_user.flags.writeable
    opened.DELTA_MIN = 30
    opened.add(events[400:])
    assert opened._base is base and len(opened._recent) > 0  # the mapped base is never copied
    times = [day(n) for n in (0.5, 4, 10.5)]
    same_answers(opened, History.from_events(events), list(range(1, 40)), [100, 115, 129], times)
    again = History.open(tmp_path, mmap=False)
    same_answers(again, saved, list(range(1, 40)), [100, 115, 129], times)
