"""The shared history snapshot: mapped by every worker, built once, rebuilt when stale."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
from feedlab.gateway.snapshot import REBUILD_SHARE, StartData
from feedlab.storage.schema import feed
from sqlalchemy import Engine, delete, insert

from tests.support.gateway import seed_world
from tests.support.snapshot_worker import LATE, answers

ROOT = Path(__file__).resolve().parents[1]


def start_workers(engine: Engine, folder: Path, n: int = 2) -> list[dict]:
    url = engine.url.render_as_string(hide_password=False)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.snapshot_worker", url, str(folder)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(n)
    ]
    outs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    return [json.loads(out.splitlines()[-1]) for out in outs]


def add_likes(engine: Engine, n: int, user: int = 11) -> None:
    rows = [
        {"timestamp": LATE + timedelta(minutes=i), "user_id": user, "post_id": 1 + i % 30,
         "action": "like"}
        for i in range(n)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(feed), rows)


def test_two_workers_map_one_snapshot_built_once_and_answer_alike(engine, tmp_path):
    """Two processes start at once on an empty folder: one builds, both map the same files
    (shared pages), and both answer what a History read from the database answers."""
    seed_world(engine)
    folder = tmp_path / "snapshot"
    first, second = start_workers(engine, folder)
    assert first["version"] == second["version"] and first["mapped"] and second["mapped"]
    assert [p.name for p in folder.glob("v-*")] == [first["version"]]
    expected = answers(StartData.from_engine(engine))
    assert first["answers"] == second["answers"] == expected
    assert expected["events"] == 100


def test_rows_after_the_snapshot_are_read_and_a_stale_snapshot_is_rebuilt(engine, tmp_path):
    seed_world(engine)  # 100 feed rows
    folder = tmp_path / "snapshot"
    built = StartData.from_database(engine, folder)
    add_likes(engine, int(REBUILD_SHARE * 100))  # at the share: mapped, rows read after it
    fresh = StartData.from_database(engine, folder)
    assert fresh.version == built.version
    assert len(fresh.tail["ts_us"]) == 10 and len(fresh.history) == 110
    assert answers(fresh) == answers(StartData.from_engine(engine))
    assert fresh.history.liked_before(11, LATE + timedelta(days=1)).tolist() == list(range(1, 11))
    add_likes(engine, 2)  # past the share: rebuilt
    rebuilt = StartData.from_database(engine, folder)
    assert rebuilt.version != built.version and len(rebuilt.tail["ts_us"]) == 0
    assert answers(rebuilt) == answers(StartData.from_engine(engine))
    assert [p.name for p in folder.glob("v-*")] == [rebuilt.version]


def test_another_database_at_the_same_last_id_rebuilds_the_snapshot(engine, tmp_path):
    seed_world(engine)
    folder = tmp_path / "snapshot"
    built = StartData.from_database(engine, folder)
    with engine.begin() as conn:  # the last row replaced by a different event, same count
        conn.execute(delete(feed).where(feed.c.id == built.through_id))
        conn.execute(
            insert(feed),
            [{"id": built.through_id, "timestamp": LATE, "user_id": 5, "post_id": 7,
              "action": "like"}],
        )  # fmt: skip
    again = StartData.from_database(engine, folder)
    assert again.version != built.version
    assert 7 in again.history.liked_before(5, LATE + timedelta(seconds=1)).tolist()


def test_a_start_without_the_database_serves_what_the_last_start_saw(engine, tmp_path):
    """`load` maps the snapshot and adds the rows, posts and users the last start with the
    database read after it (start.npz)."""
    seed_world(engine)
    folder = tmp_path / "snapshot"
    StartData.from_database(engine, folder)
    add_likes(engine, 5)
    last = StartData.from_database(engine, folder)
    offline = StartData.load(folder)
    assert offline.version == last.version and offline.through_id == last.through_id
    assert answers(offline) == answers(last)
    assert offline.known_users == last.known_users
    assert np.array_equal(offline.posts.post_ids, last.posts.post_ids)
