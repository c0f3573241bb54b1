import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from feedlab.storage import schema
from sqlalchemy import func, select
from typer.testing import CliRunner

from feedlab.cli import app
from tests.support.db import migrated

pytestmark = pytest.mark.data
FEEDLAB = Path(sys.executable).parent / "feedlab"


def counts(url: str) -> tuple[int, int, int, int]:
    engine = migrated(url)
    with engine.connect() as conn:
        n = {
            t: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (schema.users, schema.posts)
        }
        by_action = dict(
            conn.execute(select(schema.feed.c.action, func.count()).group_by("action")).all()
        )
    engine.dispose()
    return n[schema.users], n[schema.posts], by_action["view"], by_action["like"]


def test_movielens_counts_through_the_cli(db_url, shared_data):
    folder = shared_data / "movielens-100k"
    result = CliRunner().invoke(app, ["import", "movielens", str(folder), "--url", db_url])
    assert result.exit_code == 0, result.output
    assert "943 users, 1,682 posts, 100,000 views, 55,375 likes" in result.output
    assert counts(db_url) == (943, 1682, 100_000, 55_375)

    engine = migrated(db_url)
    with engine.connect() as conn:
        user = conn.execute(select(schema.users).where(schema.users.c.user_id == 1)).one()
        toy_story = conn.execute(select(schema.posts).where(schema.posts.c.post_id == 1)).one()
        liked_views = conn.execute(
            select(func.count()).select_from(schema.feed).where(schema.feed.c.target == 1)
        ).scalar_one()
        first = conn.execute(select(schema.feed).order_by(schema.feed.c.id).limit(2)).all()
    engine.dispose()
    assert (user.age, user.gender, user.country, user.city) == (24, "M", "US", "US-8 Mountain")
    assert user.attributes == {"occupation": "technician", "zip": "85711", "zip_region": 8}
    assert toy_story.topic == "Animation"
    assert toy_story.text.startswith("Toy Story (1995). Genres: Animation, Children's, Comedy.")
    assert "Woody" in toy_story.text
    assert toy_story.created_at == datetime(1995, 1, 1)
    assert liked_views == 55_375
    # the earliest rating (user 259, movie 255, 1997-09-20 03:05:10 UTC) is a 4: view, then like
    assert [(r.user_id, r.post_id, r.action, r.target) for r in first] == [
        (259, 255, "view", 1),
        (259, 255, "like", None),
    ]
    assert first[0].timestamp == datetime(1997, 9, 20, 3, 5, 10)


def test_movielens_through_the_installed_feedlab_command(sqlite_url, shared_data):
    env = os.environ | {"FEEDLAB_DATABASE_URL": sqlite_url}
    done = subprocess.run(
        [str(FEEDLAB), "import", "movielens", str(shared_data / "movielens-100k")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert counts(sqlite_url) == (943, 1682, 100_000, 55_375)
    assert "943 users, 1,682 posts, 100,000 views, 55,375 likes" in done.stdout
