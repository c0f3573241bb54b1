"""HTTP model backends: a real `feedlab serve-model` subprocess, then killed; a backend slower
than its timeout; a closed port. The gateway always answers 200 with the assigned arm."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from feedlab.experiments.assignment import Assigner
from feedlab.experiments.config import load_config
from feedlab.gateway.app import create_app
from feedlab.gateway.settings import Settings
from feedlab.storage.schema import exposures
from sqlalchemy import Engine, select

from feedlab.processes import free_port, serve_subprocess
from tests.support.db import migrated
from tests.support.gateway import ServerThread, seed_world, wait_until, write_config

pytestmark = pytest.mark.postgres

FEB = "2024-02-01T00:00:00"
KNOWN_USERS = range(1, 11)  # seed_world's users: known, so their arm's model is asked


def exposure(engine: Engine, request_id: str) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(select(exposures).where(exposures.c.request_id == request_id)).first()
    return dict(row._mapping) if row else None


def logged(engine: Engine, request_id: str) -> dict:
    assert wait_until(lambda: exposure(engine, request_id) is not None)
    return exposure(engine, request_id)


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def users_by_arm(config_path: Path) -> dict[str, list[int]]:
    assigner = Assigner(load_config(config_path).config)
    arms: dict[str, list[int]] = {}
    for uid in KNOWN_USERS:
        arms.setdefault(assigner.assign(uid).exp_group, []).append(uid)
    assert set(arms) == {"control", "test"}
    return arms


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung model)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for s in held:
            s.close()


@pytest.mark.slow
def test_model_service_serves_an_arm_and_its_death_falls_back(pg_url: str, tmp_path: Path):
    engine = migrated(pg_url)
    seed_world(engine)
    port = free_port()
    env = {"FEEDLAB_DATABASE_URL": pg_url}
    service_args = ["serve-model", "popular", "--port", str(port)]
    remote = f'  remote: {{backend: http, url: "http://127.0.0.1:{port}", timeout_ms: 5000}}\n'
    config = write_config(tmp_path / "exp.yaml", test="remote", models=remote)
    uid = users_by_arm(config)["test"][0]
    settings = Settings(database_url=pg_url, config_path=config, spool_dir=tmp_path / "spool")
    with (
        serve_subprocess(service_args, env, port, tmp_path / "model.log") as service,
        ServerThread(create_app(settings)) as gw,
    ):
        health = httpx.get(f"{gw.url}/health").json()
        assert health["models"]["remote"] == {"backend": "http", "version": "30d"}
        r = httpx.get(f"{gw.url}/post/recommendations/", params={"id": uid, "time": FEB})
        assert r.status_code == 200 and r.json()["exp_group"] == "test"
        row = logged(engine, r.headers["X-Request-ID"])
        assert (row["model"], row["model_version"], row["fallback"]) == ("remote", "30d", False)
        assert row["post_ids"] == [p["id"] for p in r.json()["recommendations"]]

        before = httpx.get(f"http://127.0.0.1:{port}/health").json()["history_events"]
        like = {"timestamp": "2024-01-31T00:00:00", "user_id": uid, "post_id": 4}
        httpx.post(f"{gw.url}/feed", json={**like, "action": "like"}).raise_for_status()
        assert wait_until(
            lambda: (
                httpx.get(f"http://127.0.0.1:{port}/health").json()["history_events"] == before + 1
            )
        ), "the model service follows the feed table"

        service.kill()
        service.wait()
        r = httpx.get(f"{gw.url}/post/recommendations/", params={"id": uid, "time": FEB})
        assert r.status_code == 200
        assert r.json()["exp_group"] == "test"
        assert len(r.json()["recommendations"]) == 5
        row = logged(engine, r.headers["X-Request-ID"])
        assert (row["exp_group"], row["model"], row["fallback"]) == ("test", "popular", True)
        labels = {"exp_group": "test", "model": "remote"}
        assert metric(gw.url, "feedlab_fallbacks_total", **labels) == 1
        assert metric(gw.url, "feedlab_backend_errors_total", reason="ConnectError") == 1
    engine.dispose()


def test_slow_and_closed_backends_fall_back_with_the_same_exp_group(pg_url: str, tmp_path: Path):
    engine = migrated(pg_url)
    seed_world(engine)
    with silent_server() as slow_port:
        closed_port = free_port()
        models = (
            f'  slow: {{backend: http, url: "http://127.0.0.1:{slow_port}", timeout_ms: 100}}\n'
            f'  gone: {{backend: http, url: "http://127.0.0.1:{closed_port}", timeout_ms: 100}}\n'
        )
        config = write_config(tmp_path / "exp.yaml", control="slow", test="gone", models=models)
        arms = users_by_arm(config)
        settings = Settings(database_url=pg_url, config_path=config, spool_dir=tmp_path / "sp")
        with ServerThread(create_app(settings)) as gw:
            for group, model, reason in (("control", "slow", "timeout"), ("test", "gone", None)):
                for uid in arms[group]:
                    r = httpx.get(f"{gw.url}/post/recommendations/", params={"id": uid})
                    assert r.status_code == 200
                    assert r.json()["exp_group"] == group
                    row = logged(engine, r.headers["X-Request-ID"])
                    assert row["fallback"] is True and row["model"] == "popular"
                    assert row["exp_group"] == group
                n = len(arms[group])
                assert metric(gw.url, "feedlab_fallbacks_total", model=model) == n
                errors = metric(gw.url, "feedlab_backend_errors_total", model=model)
                assert errors == n
                if reason:
                    assert metric(gw.url, "feedlab_backend_errors_total", reason=reason) == n
    engine.dispose()


def test_a_model_service_reporting_an_unstorable_version_falls_back(pg_url: str, tmp_path: Path):
    """Values from a model service are checked at the boundary: an 86-character version
    would be refused by the exposure log, so the answer is a backend error (fallback, logged)
    and the exposure is stored."""
    engine = migrated(pg_url)
    seed_world(engine)
    bad = FastAPI()
    version = "v" * 86

    @bad.get("/health")
    def health() -> dict:
        return {"version": version}

    @bad.get("/recommend")
    def recommend() -> dict:
        return {"post_ids": [4, 5, 6], "version": version}

    with ServerThread(bad) as service:
        remote = f'  remote: {{backend: http, url: "{service.url}", timeout_ms: 2000}}\n'
        config = write_config(tmp_path / "exp.yaml", test="remote", models=remote)
        uid = users_by_arm(config)["test"][0]
        settings = Settings(database_url=pg_url, config_path=config, spool_dir=tmp_path / "sp")
        with ServerThread(create_app(settings)) as gw:
            assert httpx.get(f"{gw.url}/health").json()["models"]["remote"]["version"] is None
            r = httpx.get(f"{gw.url}/post/recommendations/", params={"id": uid, "time": FEB})
            assert r.status_code == 200 and r.json()["exp_group"] == "test"
            row = logged(engine, r.headers["X-Request-ID"])
            assert (row["model"], row["fallback"]) == ("popular", True)
            assert metric(gw.url, "feedlab_backend_errors_total", reason="BackendError") == 1
            assert httpx.get(f"{gw.url}/health").json()["exposures_dead_lettered"] == 0
    engine.dispose()
