"""Interleaving through the real gateway (uvicorn, PostgreSQL): one merged list per request,
each post's contributing arm and the coin seed logged, replayable; one arm failing serves the
other's list as a fallback."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import httpx
import pytest
from feedlab.gateway.app import create_app
from feedlab.gateway.interleaving import request_seed, team_draft
from feedlab.gateway.settings import Settings
from feedlab.models.catalog import PostCatalog
from feedlab.models.history import History
from feedlab.models.registry import load_model
from feedlab.storage.schema import exposure_items
from sqlalchemy import Engine, select

from feedlab.processes import free_port
from tests.support.db import migrated
from tests.support.gateway import ServerThread, seed_world
from tests.test_gateway_backends import logged, metric

pytestmark = pytest.mark.postgres

FEB = "2024-02-01T00:00:00"
USERS = range(1, 11)


def interleaving_config(path: Path, control: str, test: str, models: str = "") -> Path:
    path.write_text(
        f"""default_model: popular
experiments:
  - name: il
    status: running
    salt: "il"
    traffic: 100
    design: interleaving
    arms:
      - {{name: control, model: {control}}}
      - {{name: test, model: {test}}}
models:
  popular: {{backend: inprocess}}
{models}"""
    )
    return path


def items(engine: Engine, request_id: str) -> list[tuple[int, str | None]]:
    i = exposure_items.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(i.post_id, i.team).where(i.request_id == request_id).order_by(i.position)
        ).all()
    return [(r.post_id, r.team) for r in rows]


def test_both_arms_merged_logged_per_post_and_replayable(pg_url: str, tmp_path: Path) -> None:
    engine = migrated(pg_url)
    seed_world(engine)
    history, catalog = History.from_engine(engine), PostCatalog.from_engine(engine)
    arms = {name: load_model(name, None, history, catalog) for name in ("popular", "random")}
    config = interleaving_config(tmp_path / "il.yaml", "popular", "random")
    settings = Settings(database_url=pg_url, config_path=config, spool_dir=tmp_path / "spool")
    at = datetime.fromisoformat(FEB)
    teams_seen = set()
    with ServerThread(create_app(settings)) as gw:
        for uid in USERS:
            r = httpx.get(f"{gw.url}/post/recommendations/", params={"id": uid, "time": FEB})
            assert r.status_code == 200
            assert r.json()["exp_group"] == "interleaved"
            served = [p["id"] for p in r.json()["recommendations"]]
            assert len(served) == 5 == len(set(served))
            request_id = r.headers["X-Request-ID"]
            row = logged(engine, request_id)
            assert row["seed"] == request_seed(request_id)
            assert (row["model"], row["fallback"], row["exp_group"]) == (
                "interleaved",
                False,
                "interleaved",
            )
            assert row["model_version"] == f"{arms['popular'].version}+{arms['random'].version}"
            replay = team_draft(
                arms["popular"].recommend(uid, at, 5),
                arms["random"].recommend(uid, at, 5),
                5,
                row["seed"],
            )
            logged_items = items(engine, request_id)
            assert [p for p, _ in logged_items] == served == replay.post_ids
            assert [t for _, t in logged_items] == [("control", "test")[t] for t in replay.teams]
            teams_seen.update(t for _, t in logged_items)
    assert teams_seen == {"control", "test"}
    engine.dispose()


def test_one_arm_failing_serves_the_other_arms_list_as_fallback(pg_url: str, tmp_path: Path):
    engine = migrated(pg_url)
    seed_world(engine)
    gone = f'  gone: {{backend: http, url: "http://127.0.0.1:{free_port()}", timeout_ms: 100}}\n'
    config = interleaving_config(tmp_path / "il.yaml", "popular", "gone", gone)
    settings = Settings(database_url=pg_url, config_path=config, spool_dir=tmp_path / "spool")
    with ServerThread(create_app(settings)) as gw:
        for uid in USERS:
            r = httpx.get(f"{gw.url}/post/recommendations/", params={"id": uid, "time": FEB})
            assert r.status_code == 200 and r.json()["exp_group"] == "interleaved"
            served = [p["id"] for p in r.json()["recommendations"]]
            assert len(served) == 5
            row = logged(engine, r.headers["X-Request-ID"])
            assert (row["model"], row["fallback"], row["seed"]) == ("popular", True, None)
            assert items(engine, r.headers["X-Request-ID"]) == [(p, "control") for p in served]
        assert metric(gw.url, "feedlab_fallbacks_total", model="gone") == len(USERS)
    both_gone = interleaving_config(tmp_path / "il2.yaml", "gone", "gone", gone)
    settings = Settings(database_url=pg_url, config_path=both_gone, spool_dir=tmp_path / "sp2")
    with ServerThread(create_app(settings)) as gw:
        r = httpx.get(f"{gw.url}/post/recommendations/", params={"id": 2, "time": FEB})
        assert r.status_code == 200 and len(r.json()["recommendations"]) == 5
        row = logged(engine, r.headers["X-Request-ID"])
        assert (row["model"], row["fallback"]) == ("popular", True)
        assert {t for _, t in items(engine, r.headers["X-Request-ID"])} == {None}
    engine.dispose()
