"""Assignment through real gateway processes: two at once agree, and a restart changes nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from feedlab.experiments.assignment import Assigner
from feedlab.experiments.config import load_config

from feedlab.processes import free_port, serve_subprocess, start_feedlab, stop_process, wait_healthy
from tests.support.db import migrated
from tests.support.gateway import seed_world, write_config

pytestmark = pytest.mark.postgres

USERS = [*range(1, 12), 777, 10**9 + 3, 2**53 - 1]


def groups(port: int) -> list[str]:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        return [
            client.get("/post/recommendations/", params={"id": u}).json()["exp_group"]
            for u in USERS
        ]


@pytest.mark.slow
def test_two_processes_and_a_restart_give_every_user_the_same_arm(pg_url: str, tmp_path: Path):
    engine = migrated(pg_url)
    seed_world(engine)
    engine.dispose()
    config = write_config(tmp_path / "exp.yaml", salt="processes")
    expected = [Assigner(load_config(config).config).assign(u).exp_group for u in USERS]
    assert set(expected) == {"control", "test"}
    env = {"FEEDLAB_DATABASE_URL": pg_url, "FEEDLAB_SPOOL_DIR": str(tmp_path / "spool")}
    ports = [free_port(), free_port()]

    def args(port: int) -> list[str]:
        return ["serve", "--port", str(port), "--config", str(config), "--no-watch"]

    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_feedlab(args(p), env, log) for p, log in zip(ports, logs, strict=True)]
    try:
        for proc, port, log in zip(procs, ports, logs, strict=True):
            wait_healthy(f"http://127.0.0.1:{port}", proc, 60, log)
        assert groups(ports[0]) == expected
        assert groups(ports[1]) == expected
    finally:
        for proc in procs:
            stop_process(proc)
    with serve_subprocess(args(ports[0]), env, ports[0], logs[0]):
        assert groups(ports[0]) == expected
