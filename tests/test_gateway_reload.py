"""Live config reload under load: file watch and POST /admin/reload; invalid edits refused."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from feedlab.experiments.assignment import Assigner
from feedlab.experiments.config import load_config
from feedlab.gateway.app import create_app
from feedlab.gateway.settings import Settings
from feedlab.storage.schema import experiment_configs, exposures
from sqlalchemy import Engine, select

from tests.support.db import migrated
from tests.support.gateway import LoadLoop, ServerThread, seed_world, wait_until, write_config

pytestmark = pytest.mark.postgres

TOKEN = "reload-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


_clients: dict[str, httpx.Client] = {}


@pytest.fixture(autouse=True, scope="module")
def _close_clients() -> Iterator[None]:
    yield
    for client in _clients.values():
        client.close()


def group_of(url: str, uid: int) -> str:
    """The served exp_group (one keep-alive client per server: cheap to poll)."""
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = httpx.Client(base_url=url, timeout=10)
    return client.get("/post/recommendations/", params={"id": uid}).json()["exp_group"]


def assigner_for(tmp_path: Path, salt: str) -> Assigner:
    return Assigner(load_config(write_config(tmp_path / f"{salt}.yaml", salt=salt)).config)


def setup_world(pg_url: str, tmp_path: Path, watch: bool) -> tuple[Engine, Settings]:
    engine = migrated(pg_url)
    seed_world(engine)
    (tmp_path / "live").mkdir()
    settings = Settings(
        database_url=pg_url,
        config_path=write_config(tmp_path / "live" / "exp.yaml", salt="s1"),
        spool_dir=tmp_path / "spool",
        admin_token=TOKEN,
        watch_config=watch,
    )
    return engine, settings


@pytest.mark.slow
def test_file_edit_under_load_switches_salt_within_2s_and_bad_edit_changes_nothing(
    pg_url: str, tmp_path: Path
):
    engine, settings = setup_world(pg_url, tmp_path, watch=True)
    path = settings.config_path
    a1, a2 = assigner_for(tmp_path, "s1"), assigner_for(tmp_path, "s2")
    users = list(range(1, 400))
    probes = [u for u in users if a1.assign(u).exp_group != a2.assign(u).exp_group][:8]
    assert len(probes) == 8
    v1, v2 = (load_config(tmp_path / f"{s}.yaml").version for s in ("s1", "s2"))

    with ServerThread(create_app(settings)) as server, LoadLoop(server.url, users) as load:
        load.wait_for(100)
        assert [group_of(server.url, u) for u in probes] == [a1.assign(u).exp_group for u in probes]

        write_config(path, salt="s2")
        switched = wait_until(
            lambda: (
                [group_of(server.url, u) for u in probes]
                == [a2.assign(u).exp_group for u in probes]
            ),
            timeout=2.0,
        )
        assert switched, "new salt not in force within 2 s"
        load.wait_for(100)

        path.write_text(path.read_text().replace("traffic: 100", "traffic: 250"))

        def refused() -> bool:
            cfg = httpx.get(f"{server.url}/admin/config", headers=AUTH, timeout=10).json()
            return cfg["last_error"] is not None

        assert wait_until(refused, timeout=10)
        load.wait_for(100)
        cfg = httpx.get(f"{server.url}/admin/config", headers=AUTH, timeout=10).json()
        assert cfg["config_version"] == v2
        issues = cfg["last_error"]["issues"]
        assert {"field": "experiments[0].traffic", "line": 6} in [
            {k: i[k] for k in ("field", "line")} for i in issues
        ]
        assert [group_of(server.url, u) for u in probes] == [a2.assign(u).exp_group for u in probes]

    assert len(load.results) >= 300
    assert load.failures == []
    for r in load.results:
        assert r.exp_group in (a1.assign(r.user_id).exp_group, a2.assign(r.user_id).exp_group)
    with engine.connect() as conn:
        stored = set(conn.execute(select(experiment_configs.c.config_version)).scalars())
        served = set(conn.execute(select(exposures.c.config_version).distinct()).scalars())
    assert stored == {v1, v2}
    assert served == {v1, v2}
    engine.dispose()


def test_admin_reload_applies_good_and_refuses_bad_files(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    engine, settings = setup_world(pg_url, tmp_path, watch=False)
    path = settings.config_path
    a3 = assigner_for(tmp_path, "s3")
    with ServerThread(create_app(settings)) as server:
        url = server.url
        v1 = httpx.get(f"{url}/health").json()["config_version"]
        write_config(path, salt="s3")
        assert httpx.get(f"{url}/health").json()["config_version"] == v1  # no watcher here
        r = httpx.post(f"{url}/admin/reload", headers=AUTH, timeout=30)
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "ok" and body["changed"] is True
        v3 = body["config_version"]
        assert v3 != v1 and httpx.get(f"{url}/health").json()["config_version"] == v3
        assert all(group_of(url, u) == a3.assign(u).exp_group for u in range(1, 30))

        path.write_text(path.read_text().replace("status: running", "status: on"))
        with caplog.at_level(logging.ERROR, logger="feedlab.gateway"):
            r = httpx.post(f"{url}/admin/reload", headers=AUTH, timeout=30)
        assert r.status_code == 422
        body = r.json()
        assert body["status"] == "refused" and body["config_version"] == v3
        assert body["error"]["issues"][0]["field"] == "experiments[0].status"
        assert body["error"]["issues"][0]["line"] == 4
        assert "experiments[0].status" in caplog.text and "line 4" in caplog.text
        assert httpx.get(f"{url}/health").json()["config_version"] == v3
        shown = httpx.get(f"{url}/admin/config", headers=AUTH).json()
        assert "line 4: experiments[0].status" in shown["last_error"]["message"]
        assert all(group_of(url, u) == a3.assign(u).exp_group for u in range(1, 30))

        path.write_text(path.read_text().replace("status: on", "status: stopped"))
        body = httpx.post(f"{url}/admin/reload", headers=AUTH, timeout=30).json()
        assert body["changed"] is True
        assert group_of(url, 5) == "default"
        assert httpx.get(f"{url}/admin/config", headers=AUTH).json()["last_error"] is None
        forced = httpx.post(f"{url}/admin/reload?models=true", headers=AUTH, timeout=30).json()
        assert forced["status"] == "ok" and forced["changed"] is False
    engine.dispose()
