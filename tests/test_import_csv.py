import csv
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from feedlab.storage import schema
from feedlab.storage.importers.csv_files import import_csv
from feedlab.storage.importing import DatabaseNotEmptyError
from feedlab.storage.validation import ImportValidationError
from sqlalchemy import func, inspect, select
from typer.testing import CliRunner

from feedlab.cli import app

FEED_HEADER = ["timestamp", "user_id", "post_id", "action", "target"]


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def good_files(folder: Path, n_feed: int = 1000) -> tuple[Path, Path, Path]:
    users = write_csv(
        folder / "users.csv",
        ["user_id", "age", "gender", "country", "city", "exp_group", "os", "source", "plan"],
        [
            [u, 20 + u % 40, "MF"[u % 2], "Cyprus", "Limassol", u % 5, "iOS", "ads", "free"]
            for u in range(1, 21)
        ],
    )
    posts = write_csv(
        folder / "posts.csv",
        ["post_id", "text", "topic"],
        [[p, f'post {p}\nsecond line, with "quotes"', "news"] for p in range(1, 11)],
    )
    start = datetime(2024, 1, 1)
    feed = []
    for i in range(n_feed):
        ts = start + timedelta(minutes=i)
        stamp = ts.isoformat() if i % 2 else str(int((ts - datetime(1970, 1, 1)).total_seconds()))
        action = "like" if i % 10 == 9 else "view"
        feed.append([stamp, 1 + i % 20, 1 + i % 10, action, "" if action == "like" else i % 2])
    return users, posts, write_csv(folder / "feed.csv", FEED_HEADER, feed)


FEED_INDEXES = {"ix_feed_event_id", "ix_feed_ts", "ix_feed_user_ts"}


def feed_indexes(engine) -> set[str]:
    return {index["name"] for index in inspect(engine).get_indexes("feed")}


def table_snapshot(engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
            for t in (schema.users, schema.posts, schema.feed)
        }


def test_good_csv_import_maps_columns_and_keeps_unknown_ones_in_attributes(engine, tmp_path):
    summary = import_csv(engine, *good_files(tmp_path))
    assert (summary.users, summary.posts, summary.views, summary.likes) == (20, 10, 900, 100)
    with engine.connect() as conn:
        user = conn.execute(select(schema.users).where(schema.users.c.user_id == 3)).one()
        post = conn.execute(select(schema.posts).where(schema.posts.c.post_id == 2)).one()
        first = conn.execute(select(schema.feed).order_by(schema.feed.c.id).limit(2)).all()
        like_targets = (
            conn.execute(
                select(schema.feed.c.target).where(schema.feed.c.action == "like").distinct()
            )
            .scalars()
            .all()
        )
    assert (user.age, user.gender, user.country, user.city, user.os, user.source) == (
        23,
        "F",
        "Cyprus",
        "Limassol",
        "iOS",
        "ads",
    )
    assert user.attributes == {"exp_group": 3, "plan": "free"}
    assert post.text == 'post 2\nsecond line, with "quotes"'
    assert [r.timestamp for r in first] == [datetime(2024, 1, 1), datetime(2024, 1, 1, 0, 1)]
    assert like_targets == [None]
    assert feed_indexes(engine) == FEED_INDEXES


def test_timezone_offsets_become_naive_utc(sqlite_url, tmp_path):
    from tests.support.db import migrated

    users, posts, _ = good_files(tmp_path)
    feed = write_csv(
        tmp_path / "feed.csv",
        FEED_HEADER,
        [["2024-01-01T12:00:00+03:00", 1, 1, "view", 1], ["2024-01-01T12:00:00Z", 1, 2, "view", 0]],
    )
    engine = migrated(sqlite_url)
    import_csv(engine, users, posts, feed)
    with engine.connect() as conn:
        stamps = conn.execute(select(schema.feed.c.timestamp).order_by("id")).scalars().all()
    assert stamps == [datetime(2024, 1, 1, 9), datetime(2024, 1, 1, 12)]


def test_malformed_row_is_refused_with_file_and_line_and_database_is_unchanged(engine, tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    import_csv(engine, *good_files(good, n_feed=50))
    before = table_snapshot(engine)

    users, posts, feed = good_files(tmp_path, n_feed=1001)
    lines = feed.read_text().splitlines()
    lines[512 - 1] = lines[512 - 1].replace(",view,", ",lik,")  # line 512 = the 511th event
    feed.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImportValidationError) as err:
        import_csv(engine, users, posts, feed, replace=True)
    assert (
        str(err.value) == "feed.csv line 512: column 'action' must be 'view' or 'like', got 'lik'"
    )
    assert (err.value.source, err.value.line, err.value.column) == ("feed.csv", 512, "action")
    assert table_snapshot(engine) == before
    assert feed_indexes(engine) == FEED_INDEXES  # dropped for the load, restored by the rollback


def test_cli_prints_the_error_and_exits_1(db_url, tmp_path):
    users, posts, feed = good_files(tmp_path, n_feed=1001)
    with feed.open("a") as handle:
        handle.write("2024-02-01T00:00:00,1,999,view,0\n")  # line 1003: unknown post
    args = ["import", "csv", "--users", users, "--posts", posts, "--feed", feed, "--url", db_url]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 1
    assert "feed.csv line 1003: column 'post_id' refers to unknown post 999" in result.output
    from tests.support.db import migrated

    engine = migrated(db_url)
    assert all(rows == [] for rows in table_snapshot(engine).values())
    engine.dispose()


@pytest.mark.parametrize(
    ("file", "edit", "expected"),
    [
        (
            "feed",
            (5, "2024-01-01T00:04:00,3,4,view,0", "2024-01-01T00:04:00,3,4,view,2"),
            "feed.csv line 5: column 'target' must be <= 1, got 2",
        ),
        (
            "feed",
            (7, None, "yesterday,1,1,view,0"),
            "feed.csv line 7: column 'timestamp' must be an ISO 8601 datetime or unix seconds, "
            "got 'yesterday'",
        ),
        (
            "feed",
            (9, None, "2024-01-01T00:00:00,21,1,view,0"),
            "feed.csv line 9: column 'user_id' refers to unknown user 21",
        ),
        (
            "feed",
            (4, None, "2024-01-01T00:00:00,x1,1,view,0"),
            "feed.csv line 4: column 'user_id' must be an integer, got 'x1'",
        ),
        (
            "users",
            (4, None, "2,30,F,Cyprus,Limassol,1,iOS,ads,free"),
            "users.csv line 4: column 'user_id' duplicate value 2",
        ),
        (
            "users",
            (6, None, "5,abc,F,Cyprus,Limassol,1,iOS,ads,free"),
            "users.csv line 6: column 'age' must be an integer, got 'abc'",
        ),
    ],
)
def test_first_bad_row_is_named(sqlite_url, tmp_path, file, edit, expected):
    from tests.support.db import migrated

    paths = dict(zip(("users", "posts", "feed"), good_files(tmp_path, n_feed=20), strict=True))
    line, _, replacement = edit
    lines = paths[file].read_text().splitlines()
    lines[line - 1] = replacement
    paths[file].write_text("\n".join(lines) + "\n")
    engine = migrated(sqlite_url)
    with pytest.raises(ImportValidationError) as err:
        import_csv(engine, paths["users"], paths["posts"], paths["feed"])
    assert str(err.value) == expected


def test_line_numbers_count_multiline_post_texts(sqlite_url, tmp_path):
    from tests.support.db import migrated

    users, posts, feed = good_files(tmp_path, n_feed=20)
    with posts.open("a") as handle:
        handle.write('11,"fine",news\n12,"also\nfine",news\nthirteen,"x",news\n')
    # 10 two-line posts after the header: lines 2-21; 11 at 22; 12 at 23-24; the bad one at 25
    with pytest.raises(ImportValidationError, match=r"posts\.csv line 25: column 'post_id'"):
        import_csv(migrated(sqlite_url), users, posts, feed)


def test_non_empty_database_is_refused_unless_replace(engine, tmp_path):
    files = good_files(tmp_path, n_feed=30)
    import_csv(engine, *files)
    before = table_snapshot(engine)
    with pytest.raises(DatabaseNotEmptyError, match="--replace"):
        import_csv(engine, *files)
    assert table_snapshot(engine) == before
    summary = import_csv(engine, *good_files(tmp_path, n_feed=40), replace=True)
    assert summary.views + summary.likes == 40
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.feed)).scalar_one() == 40


def test_failed_load_into_an_untouched_sqlite_file_keeps_the_feed_indexes(sqlite_url, tmp_path):
    """No row was written before the feed, so the index drop must still be inside a transaction."""
    from tests.support.db import migrated

    users = write_csv(tmp_path / "nobody.csv", ["user_id"], [])
    posts = write_csv(tmp_path / "nothing.csv", ["post_id", "text", "topic"], [])
    feed = write_csv(tmp_path / "one.csv", FEED_HEADER, [["2024-01-01", 1, 1, "view", 0]])
    engine = migrated(sqlite_url)
    with pytest.raises(ImportValidationError, match="unknown user 1"):
        import_csv(engine, users, posts, feed)
    assert feed_indexes(engine) == FEED_INDEXES


def test_line_numbers_and_event_ids_are_checked_across_feed_chunks(sqlite_url, tmp_path):
    from tests.support.db import migrated

    users, posts, _ = good_files(tmp_path, n_feed=0)
    rows = [["2024-01-01T00:00:00", 1 + i % 20, 1 + i % 10, "view", 0, f"e{i}"] for i in range(250)]
    rows[230][5] = "e17"  # line 232 repeats the event id of line 19, two chunks earlier
    feed = write_csv(tmp_path / "feed.csv", [*FEED_HEADER, "event_id"], rows)
    engine = migrated(sqlite_url)
    with pytest.raises(ImportValidationError) as err:
        import_csv(engine, users, posts, feed, chunk_rows=100)
    assert (err.value.line, err.value.column) == (232, "event_id")
    assert "duplicate value 'e17'" in str(err.value)
    rows[230][5] = "e230"
    write_csv(feed, [*FEED_HEADER, "event_id"], rows)
    assert import_csv(engine, users, posts, feed, chunk_rows=100).views == 250
    with engine.connect() as conn:
        ids = conn.execute(select(schema.feed.c.event_id).order_by("id")).scalars().all()
    assert ids == [f"e{i}" for i in range(250)]
