"""The exposure log loses nothing and duplicates nothing: database outage under load, spool
replay on restart, replay of an already-replayed spool."""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from feedlab.gateway.app import create_app
from feedlab.gateway.exposures import ConfigRecord, ExposureLog, ExposureRecord
from feedlab.gateway.settings import Settings
from feedlab.gateway.state import gateway_engine
from feedlab.storage.engine import make_engine
from feedlab.storage.schema import experiment_configs, exposure_items, exposures
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from feedlab.processes import free_port, serve_subprocess
from tests.support.db import migrated
from tests.support.gateway import (
    LoadLoop,
    ServerThread,
    TcpProxy,
    seed_world,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.postgres


def count(engine: Engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def proxied(pg_url: str, proxy: TcpProxy) -> str:
    return make_url(pg_url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


def upstream(pg_url: str) -> tuple[str, int]:
    url = make_url(pg_url)
    return url.host or "127.0.0.1", url.port or 5432


@pytest.mark.slow
def test_database_outage_under_load_loses_and_duplicates_nothing(pg_url: str, tmp_path: Path):
    engine = migrated(pg_url)
    seed_world(engine)
    proxy = TcpProxy(upstream(pg_url))
    settings = Settings(
        database_url=proxied(pg_url, proxy),
        config_path=write_config(tmp_path / "exp.yaml"),
        spool_dir=tmp_path / "spool",
        db_retry_interval=0.3,
    )
    try:
        with ServerThread(create_app(settings)) as server:
            with LoadLoop(server.url, list(range(1, 60)), workers=3) as load:
                load.wait_for(150)
                proxy.sever()
                load.wait_for(300)
                health = httpx.get(f"{server.url}/health", timeout=10).json()
                proxy.restore()
                load.wait_for(150)
            assert load.failures == []
            ok = [r for r in load.results if r.status == 200]
            assert wait_until(lambda: count(engine, exposures) == len(ok), timeout=30)
            metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert health["exposure_spool_files"] >= 1  # the outage was real: rows were spooled
        assert "feedlab_exposures_spooled_total 0.0" not in metrics
        with engine.connect() as conn:
            ids = set(conn.execute(select(exposures.c.request_id)).scalars())
            n_items = conn.execute(select(func.count()).select_from(exposure_items)).scalar()
            lens = conn.execute(select(exposures.c.post_ids)).scalars().all()
        assert ids == {r.request_id for r in ok}
        assert n_items == sum(len(p) for p in lens)
        assert not list((tmp_path / "spool").glob("*.jsonl"))
    finally:
        proxy.sever()
        engine.dispose()


@pytest.mark.slow
def test_spooled_exposures_are_replayed_once_after_a_restart(pg_url: str, tmp_path: Path):
    engine = migrated(pg_url)
    seed_world(engine)
    proxy = TcpProxy(upstream(pg_url))
    port = free_port()
    env = {
        "FEEDLAB_DATABASE_URL": proxied(pg_url, proxy),
        "FEEDLAB_SPOOL_DIR": str(tmp_path / "spool"),
    }
    args = ["serve", "--port", str(port), "--config", str(write_config(tmp_path / "exp.yaml"))]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "gateway.log"
    try:
        with serve_subprocess(args, env, port, log):
            assert wait_until(lambda: count(engine, experiment_configs) == 1, timeout=30)
            proxy.sever()
            rids = []
            for uid in range(1, 41):
                r = httpx.get(f"{url}/post/recommendations/", params={"id": uid}, timeout=10)
                assert r.status_code == 200
                rids.append(r.headers["X-Request-ID"])
        # SIGTERM: graceful shutdown flushed the queue to the spool (the database was down)
        assert count(engine, exposures) == 0
        spooled = list((tmp_path / "spool").glob("*.jsonl"))
        assert sum(len(p.read_bytes().splitlines()) for p in spooled) == 40
        proxy.restore()
        with serve_subprocess(args, env, port, log):
            assert wait_until(lambda: count(engine, exposures) == 40, timeout=30)
            assert not list((tmp_path / "spool").glob("*.jsonl"))
        with engine.connect() as conn:
            assert set(conn.execute(select(exposures.c.request_id)).scalars()) == set(rids)
        assert "replayed 40 exposures" in log.read_text()
    finally:
        proxy.sever()
        engine.dispose()


def record(user_id: int, interleaved: bool = False) -> ExposureRecord:
    now = datetime(2024, 2, 1, 12, 0, 0, 123456)
    teams = {"teams": ["test", "control", "test"], "seed": 2**62 + user_id} if interleaved else {}
    return ExposureRecord(
        request_id=str(uuid.uuid4()),
        ts=now,
        served_at=now,
        user_id=user_id,
        experiment="e",
        config_version="v1",
        exp_group="test",
        model="popular",
        model_version="30d",
        post_ids=[3, 1, 2],
        fallback=False,
        latency_ms=1.5,
        **teams,
    )


def test_replaying_the_same_spool_twice_stores_each_row_once(pg_url: str, tmp_path: Path):
    """A crash after inserting a spool file but before deleting it must not duplicate rows."""
    migrated(pg_url).dispose()
    proxy = TcpProxy(upstream(pg_url))
    engine = gateway_engine(proxied(pg_url, proxy))
    direct = make_engine(pg_url)
    spool = tmp_path / "spool"
    try:
        proxy.sever()
        writer = ExposureLog(engine, spool, flush_interval=0.05, retry_interval=0.2)
        writer.start()
        records = [record(u, interleaved=u % 2 == 1) for u in range(25)]
        for r in records:
            writer.submit(r)
        writer.submit(ConfigRecord("v1", datetime(2024, 2, 1), "default_model: popular\n"))
        writer.close()
        assert writer.stats.spooled == 25 and writer.stats.dropped == 0
        (spool_file,) = spool.glob("*.jsonl")
        backup = tmp_path / "backup.jsonl"
        shutil.copy(spool_file, backup)

        proxy.restore()
        for _ in range(2):  # second pass = the same file found again after a "crash"
            writer = ExposureLog(engine, spool, retry_interval=0.2)
            writer.start()
            assert writer.flush(timeout=20)
            writer.close()
            shutil.copy(backup, spool / "exposures-crashed.jsonl")
        assert count(direct, exposures) == 25
        assert count(direct, exposure_items) == 75
        assert count(direct, experiment_configs) == 1
        with direct.connect() as conn:
            row = conn.execute(
                select(exposures).where(exposures.c.request_id == records[0].request_id)
            ).one()
        assert row.post_ids == [3, 1, 2] and row.ts == records[0].ts
        assert row.seed is None
        with direct.connect() as conn:
            row = conn.execute(
                select(exposures).where(exposures.c.request_id == records[1].request_id)
            ).one()
            teams = conn.execute(
                select(exposure_items.c.team)
                .where(exposure_items.c.request_id == records[1].request_id)
                .order_by(exposure_items.c.position)
            ).scalars()
            assert list(teams) == ["test", "control", "test"]
        assert row.seed == 2**62 + 1
    finally:
        proxy.sever()
        engine.dispose()
        direct.dispose()
