from datetime import datetime

import pytest
from feedlab.storage import schema
from feedlab.storage.importers.postgres import import_postgres
from feedlab.storage.validation import ImportValidationError
from sqlalchemy import create_engine, func, select, text
from typer.testing import CliRunner

from feedlab.cli import app
from tests.support.db import migrated

pytestmark = pytest.mark.postgres


def make_source(url: str, bad_feed_row: bool = False) -> None:
    """The origin social network's layout, with the origin's column types."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE user_data (user_id int, gender int, age int, country text, city text,"
                " exp_group int, os text, source text)"
            )
        )
        conn.execute(text("CREATE TABLE post_text_df (post_id int, text text, topic text)"))
        conn.execute(
            text(
                "CREATE TABLE feed_data (timestamp timestamp, user_id int, post_id int,"
                " action text, target smallint)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO user_data SELECT u, u % 2, 20 + u, 'Russia', 'Moscow', u % 5, 'iOS',"
                " 'ads' FROM generate_series(1, 50) u"
            )
        )
        conn.execute(
            text(
                "INSERT INTO post_text_df SELECT p, 'text of post ' || p, 'covid'"
                " FROM generate_series(1, 30) p"
            )
        )
        conn.execute(
            text(
                "INSERT INTO feed_data SELECT timestamp '2021-10-01' + i * interval '1 minute',"
                " 1 + i % 50, 1 + i % 30, CASE WHEN i % 4 = 0 THEN 'like' ELSE 'view' END,"
                " CASE WHEN i % 4 = 0 THEN 1 ELSE i % 2 END FROM generate_series(0, 399) i"
            )
        )
        if bad_feed_row:
            conn.execute(text("INSERT INTO feed_data VALUES ('2021-10-02', 51, 1, 'view', 0)"))
    engine.dispose()


@pytest.fixture
def source_url(pg_url):
    return pg_url


def test_postgres_tables_import_with_attributes(source_url, db_url):
    make_source(source_url)
    result = CliRunner().invoke(
        app, ["import", "postgres", "--url", source_url, "--target-url", db_url]
    )
    assert result.exit_code == 0, result.output
    assert "50 users, 30 posts, 300 views, 100 likes" in result.output
    engine = migrated(db_url)
    with engine.connect() as conn:
        user = conn.execute(select(schema.users).where(schema.users.c.user_id == 7)).one()
        first = conn.execute(select(schema.feed).order_by(schema.feed.c.id).limit(1)).one()
        n_feed = conn.execute(select(func.count()).select_from(schema.feed)).scalar_one()
    engine.dispose()
    assert (user.gender, user.age, user.country, user.os) == ("1", 27, "Russia", "iOS")
    assert user.attributes == {"exp_group": 2}
    assert (first.timestamp, first.action, first.target) == (datetime(2021, 10, 1), "like", None)
    assert n_feed == 400


def test_bad_source_row_is_named_and_nothing_is_loaded(source_url, sqlite_url):
    make_source(source_url, bad_feed_row=True)
    engine = migrated(sqlite_url)
    with pytest.raises(ImportValidationError) as err:
        import_postgres(source_url, engine)
    assert str(err.value) == "feed_data row 401: column 'user_id' refers to unknown user 51"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.users)).scalar_one() == 0


def test_missing_source_table_is_named(source_url, sqlite_url):
    with pytest.raises(ImportValidationError, match="user_data: table not found"):
        import_postgres(source_url, migrated(sqlite_url))
