"""The traffic simulator against a real gateway (uvicorn on 127.0.0.1, SQLite) on a small demo
world: requests advance through simulated days, views and likes come back through POST /feed,
likes fall inside the attribution window and follow the world's hidden preference model."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from feedlab.gateway.app import create_app
from feedlab.gateway.settings import Settings
from feedlab.storage.demo import simulate as sim
from feedlab.storage.demo.world import WorldSpec, load_demo_world
from feedlab.storage.schema import exposure_items, exposures, feed
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from feedlab.cli import app
from tests.support.db import migrated
from tests.support.gateway import ServerThread

POPULAR_AB = """\
default_model: popular
experiments:
  - name: sim_ab
    status: running
    salt: sim-ab
    traffic: 100
    arms:
      - {name: control, model: popular, weight: 50}
      - {name: test, model: popular-all, weight: 50}
models:
  popular-all: {backend: inprocess}
"""


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://localhost:1/", "http://[::1]:9", "http://127.3.2.1"]
)
def test_loopback_urls_are_accepted(url: str) -> None:
    assert sim.require_loopback(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1:8000", "http://example.com", "http://0.0.0.0:8000", "ftp://127.0.0.1", "x"],
)
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="--url"):
        sim.require_loopback(url)


def test_cli_refuses_a_remote_gateway() -> None:
    result = CliRunner().invoke(app, ["simulate", "--url", "http://192.168.1.5:8000"])
    assert result.exit_code == 2
    assert "not a loopback address" in result.output


def test_schedule_is_time_ordered_bounded_and_seeded() -> None:
    start = datetime(2024, 2, 1)
    plan = sim.schedule([1, 2, 3], start, days=2, per_day=4, rng=random.Random(7))
    assert len(plan) == 3 * 2 * 4
    assert plan == sorted(plan)
    assert all(start <= at < start + timedelta(days=2) for at, _ in plan)
    assert sum(1 for at, u in plan if u == 2 and at < start + timedelta(days=1)) == 4
    assert plan == sim.schedule([1, 2, 3], start, days=2, per_day=4, rng=random.Random(7))
    assert sim.sample_users(list(range(100)), 10, seed=3) == sim.sample_users(
        list(range(100)), 10, seed=3
    )


def test_replay_judge_likes_only_held_out_high_ratings() -> None:
    t = datetime(1998, 1, 1)
    ratings = [
        (1, 10, 5, t + timedelta(days=1)),  # held out, liked
        (1, 11, 3, t + timedelta(days=1)),  # held out, not liked (rating 3)
        (1, 12, 4, t - timedelta(days=1)),  # before the held-out period
        (2, 10, 4, t),
    ]
    judge = sim.ReplayJudge(sim.movielens_holdout(ratings, t))
    rng = random.Random(0)
    assert judge.likes(1, [10, 11, 12, 99], t, rng) == [True, False, False, False]
    assert judge.likes(2, [10, 11], t, rng) == [True, False]
    assert judge.likes(3, [10], t, rng) == [False]


@pytest.fixture
def demo_world(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[Engine, Path]]:
    spec = WorldSpec(seed=5, n_users=80, n_posts=120, days=10)
    spec_path = tmp_path / "world.json"
    spec.save(spec_path)
    engine = migrated(sqlite_url)
    load_demo_world(spec, engine)
    yield engine, spec_path
    engine.dispose()


def _settings(tmp_path: Path, engine: Engine, config: str) -> Settings:
    path = tmp_path / "experiments.yaml"
    path.write_text(config)
    return Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        config_path=path,
        spool_dir=tmp_path / "spool",
        watch_config=False,
    )


def test_simulated_days_reach_the_database(tmp_path: Path, demo_world) -> None:
    engine, spec_path = demo_world
    plan = sim.demo_plan(engine, spec_path)
    world_end = sim.history_end(engine)
    users = sim.sample_users(plan.user_ids, 25, seed=1)
    with ServerThread(create_app(_settings(tmp_path, engine, POPULAR_AB))) as server:
        summary = sim.simulate(
            server.url,
            users,
            plan.judge,
            start=plan.start,
            days=2,
            requests_per_day=3,
            seed=1,
            progress=False,
        )
    # the server stopped gracefully: its exposure log is flushed
    assert summary.errors == 0
    assert summary.requests == 25 * 2 * 3
    assert set(summary.arms) == {"control", "test"}
    assert world_end < plan.start <= world_end + timedelta(days=1)
    with engine.connect() as conn:
        shown = conn.execute(select(exposures.c.ts, exposures.c.user_id)).all()
        items = conn.execute(
            select(exposure_items.c.user_id, exposure_items.c.post_id, exposure_items.c.ts)
        ).all()
        sim_events = conn.execute(
            select(feed.c.user_id, feed.c.post_id, feed.c.action, feed.c.timestamp).where(
                feed.c.event_id.like("sim-%")
            )
        ).all()
    assert len(shown) == summary.requests
    assert all(plan.start <= ts < plan.start + timedelta(days=2) for ts, _ in shown)
    assert {u for _, u in shown} == set(users)

    served = sum(arm.served for arm in summary.arms.values())
    views = [e for e in sim_events if e.action == "view"]
    likes = [e for e in sim_events if e.action == "like"]
    assert len(views) == served == len(items)
    assert len(likes) == sum(arm.likes for arm in summary.arms.values()) > 0

    # every like follows an exposure of that post to that user by 1-10 minutes
    shown_at: dict[tuple[int, int], list[datetime]] = {}
    for user_id, post_id, ts in items:
        shown_at.setdefault((user_id, post_id), []).append(ts)
    for like in likes:
        gaps = [like.timestamp - ts for ts in shown_at[(like.user_id, like.post_id)]]
        assert any(timedelta(minutes=1) <= g <= timedelta(minutes=10) for g in gaps)

    # the number of likes is what the hidden model predicts for what was served (4 sigma)
    model = WorldSpec.load(spec_path).preference_model()
    p = model.like_probability(
        np.array([u for u, _, _ in items]),
        np.array([post for _, post, _ in items]),
        np.array([ts for _, _, ts in items], dtype="datetime64[s]"),
    )
    expected, sd = p.sum(), math.sqrt((p * (1 - p)).sum())
    assert abs(len(likes) - expected) < 4 * sd + 1


@pytest.mark.slow
def test_movielens_replay_likes_only_what_users_really_rated_high(
    tmp_path: Path, sqlite_url: str, shared_data: Path
) -> None:
    from feedlab.storage.importers.movielens import import_movielens

    folder = shared_data / "movielens-100k"
    engine = migrated(sqlite_url)
    import_movielens(folder, engine)
    plan = sim.movielens_plan(folder, engine, days=7)
    users = sim.sample_users(plan.user_ids, 40, seed=2)
    with ServerThread(create_app(_settings(tmp_path, engine, POPULAR_AB))) as server:
        summary = sim.simulate(
            server.url,
            users,
            plan.judge,
            start=plan.start,
            days=7,
            requests_per_day=1,
            limit=20,
            seed=2,
            progress=False,
        )
    assert summary.errors == 0
    ratings = sim.read_movielens_ratings(folder)
    end = plan.start + timedelta(days=7)
    truly_liked = {(u, i) for u, i, r, ts in ratings if r >= 4 and plan.start <= ts < end}
    with engine.connect() as conn:
        likes = conn.execute(
            select(feed.c.user_id, feed.c.post_id).where(
                feed.c.event_id.like("sim-%"), feed.c.action == "like"
            )
        ).all()
    engine.dispose()
    assert likes, "popular movies served to active users should include some they rated 4-5"
    assert {(u, p) for u, p in likes} <= truly_liked


def test_a_dead_gateway_stops_the_simulation() -> None:
    from feedlab.processes import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    judge = sim.ReplayJudge({})
    with pytest.raises(sim.GatewayUnreachable, match="/post/recommendations/"):
        sim.simulate(url, [1, 2], judge, start=datetime(2024, 1, 1), days=1, progress=False)
