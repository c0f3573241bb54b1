from datetime import datetime

import pandas as pd
import pytest
from feedlab.storage import schema
from feedlab.storage.bulk import bulk_load
from sqlalchemy import func, select


def test_bulk_load_round_trips_nulls_text_json_and_microseconds(engine):
    users = pd.DataFrame(
        {
            "user_id": [1, 2, 3],
            "age": pd.array([30, None, 41], dtype="Int64"),
            "gender": ["F", None, "M"],
            "country": ["", "Cyprus", None],
            "city": ['Quote "city", with comma', "Line\nbreak", None],
            "os": None,
            "source": None,
            "attributes": [{"exp_group": 3, "tag": "a,b"}, None, {"x": "é"}],
        }
    )
    posts = pd.DataFrame(
        {
            "post_id": [10, 11],
            "text": ["", "\\N literal-free text"],
            "topic": ["news", None],
            "created_at": [datetime(2024, 1, 1, 12, 0, 0, 123456), None],
        }
    )
    with engine.begin() as conn:
        assert bulk_load(conn, schema.users, users, chunk_rows=2) == 3
        assert bulk_load(conn, schema.posts, posts) == 2
    with engine.connect() as conn:
        got = conn.execute(select(schema.users).order_by(schema.users.c.user_id)).all()
        got_posts = conn.execute(select(schema.posts).order_by(schema.posts.c.post_id)).all()
    assert [tuple(r) for r in got] == [
        (1, 30, "F", "", 'Quote "city", with comma', None, None, {"exp_group": 3, "tag": "a,b"}),
        (2, None, None, "Cyprus", "Line\nbreak", None, None, None),
        (3, 41, "M", None, None, None, None, {"x": "é"}),
    ]
    assert got_posts[0].text == "" and got_posts[0].created_at == datetime(
        2024, 1, 1, 12, 0, 0, 123456
    )
    assert got_posts[1].topic is None and got_posts[1].created_at is None


def test_bulk_load_is_all_or_nothing_inside_the_callers_transaction(engine):
    feed = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2024-01-01 10:00:00"] * 5),
            "user_id": [1, 2, 3, 4, 5],
            "post_id": [1, 1, 1, 1, 1],
            "action": "view",
            "target": pd.array([0, 1, 0, None, 1], dtype="Int64"),
            "event_id": ["a", "b", "c", "d", "a"],  # duplicate event id violates the unique index
        }
    )
    with pytest.raises(Exception), engine.begin() as conn:  # noqa: B017 - driver-specific error
        bulk_load(conn, schema.feed, feed.iloc[:4])
        bulk_load(conn, schema.feed, feed.iloc[4:])
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.feed)).scalar_one() == 0


def test_timestamps_compare_equal_to_sqlalchemy_bound_datetimes(engine):
    """Stored datetimes must use SQLAlchemy's format so `timestamp < :t` is exact on SQLite."""
    at = datetime(2024, 1, 1, 10, 0, 0)
    feed = pd.DataFrame(
        {"timestamp": [at], "user_id": [1], "post_id": [1], "action": ["view"], "target": [0]}
    )
    with engine.begin() as conn:
        bulk_load(conn, schema.feed, feed)
    with engine.connect() as conn:
        before = select(func.count()).select_from(schema.feed).where(schema.feed.c.timestamp < at)
        same = select(func.count()).select_from(schema.feed).where(schema.feed.c.timestamp == at)
        assert conn.execute(before).scalar_one() == 0
        assert conn.execute(same).scalar_one() == 1


def test_bulk_load_handles_exposure_rows_with_json_lists_and_booleans(engine):
    exposures = pd.DataFrame(
        {
            "request_id": ["r1", "r2"],
            "ts": [datetime(2024, 1, 1, 10), datetime(2024, 1, 1, 10, 0, 1, 500000)],
            "served_at": pd.to_datetime(["2024-01-01 10:00:00", "2024-01-01 10:00:02"]),
            "user_id": [7, 8],
            "experiment": ["e", None],
            "config_version": ["v1", "v1"],
            "exp_group": ["test", "default"],
            "model": ["test", "control"],
            "model_version": [None, "3"],
            "post_ids": [[3, 1, 2], []],
            "fallback": [True, False],
            "latency_ms": [1.25, None],
        }
    )
    with engine.begin() as conn:
        bulk_load(conn, schema.exposures, exposures)
    with engine.connect() as conn:
        rows = conn.execute(select(schema.exposures).order_by("request_id")).all()
    assert [(r.post_ids, r.fallback, r.latency_ms, r.experiment) for r in rows] == [
        ([3, 1, 2], True, 1.25, "e"),
        ([], False, None, None),
    ]
    assert rows[1].ts == datetime(2024, 1, 1, 10, 0, 1, 500000)
