"""The exposure log loses nothing and duplicates nothing: database outage under load, spool
replay on restart, replay of an already-replayed spool."""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import orjson
import pytest
from feedlab.gateway.app import create_app
from feedlab.gateway.exposures import ConfigRecord, ExposureLog, ExposureRecord, _dumps
from feedlab.gateway.settings import Settings
from feedlab.gateway.state import gateway_engine
from feedlab.storage.schema import experiment_configs, exposure_items, exposures
from sqlalchemy import func, select

from feedlab.processes import free_port, serve_subprocess
from tests.support.db import migrated
from tests.support.gateway import (
    LoadLoop,
    ServerThread,
    TcpProxy,
    count,
    proxied,
    seed_world,
    upstream,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.postgres


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
    engine = gateway_engine(Settings(database_url=proxied(pg_url, proxy)))
    direct = migrated(pg_url)
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


def test_a_poison_record_is_dead_lettered_and_the_others_are_written(pg_url: str, tmp_path: Path):
    """One record the database refuses (an 86-character model version) among 1,000: 999 are
    stored, the bad one is in the dead-letter file with the reason and counted in /metrics and
    /health, and writes go on."""
    engine = migrated(pg_url)
    seed_world(engine)
    settings = Settings(
        database_url=pg_url,
        config_path=write_config(tmp_path / "exp.yaml"),
        spool_dir=tmp_path / "spool",
        watch_config=False,
    )
    app = create_app(settings)
    try:
        with ServerThread(app) as server:
            writer = app.state.gateway.exposure_log
            good = [record(u) for u in range(999)]
            poison = record(5)
            poison.model_version = "v" * 86
            for r in [*good[:500], poison, *good[500:]]:
                writer.submit(r)
            assert wait_until(lambda: count(engine, exposures) == 999, timeout=10)
            (line,) = writer.dead_letter_path.read_bytes().splitlines()
            entry = orjson.loads(line)
            assert entry["record"]["request_id"] == poison.request_id
            assert "StringDataRightTruncation" in entry["reason"] or "too long" in entry["reason"]
            metrics = httpx.get(f"{server.url}/metrics").text
            assert "feedlab_exposures_dead_lettered_total 1.0" in metrics
            assert httpx.get(f"{server.url}/health").json()["exposures_dead_lettered"] == 1
            r = httpx.get(f"{server.url}/post/recommendations/", params={"id": 1})
            assert r.status_code == 200
            assert wait_until(lambda: count(engine, exposures) == 1000, timeout=10)
        with engine.connect() as conn:
            stored = set(conn.execute(select(exposures.c.request_id)).scalars())
        assert {r.request_id for r in good} <= stored
        assert poison.request_id not in stored
        assert not list((tmp_path / "spool").glob("*.jsonl"))
    finally:
        engine.dispose()


def test_replay_goes_on_past_poison_records_and_unreadable_files(pg_url: str, tmp_path: Path):
    migrated(pg_url).dispose()
    spool = tmp_path / "spool"
    spool.mkdir()
    good = [record(u) for u in range(30)]
    poison = record(99)
    poison.exp_group = "g" * 65
    first = b"".join(_dumps(r) for r in [*good[:10], poison, *good[10:20]])
    (spool / "exposures-1.jsonl").write_bytes(first + b'{"kind": "exposure", "torn')
    (spool / "exposures-2.jsonl").write_bytes(b"not json at all\n\x00\xff\n")
    (spool / "exposures-3.jsonl").write_bytes(b"".join(_dumps(r) for r in good[20:]))
    engine = gateway_engine(Settings(database_url=pg_url))
    writer = ExposureLog(engine, spool, retry_interval=0.2)
    try:
        writer.start()
        assert writer.flush(timeout=20)
        writer.close()
        assert count(engine, exposures) == 30
        assert writer.stats.replayed == 30 and writer.stats.dead_lettered == 4
        reasons = [
            orjson.loads(x)["reason"] for x in writer.dead_letter_path.read_bytes().splitlines()
        ]
        assert sum("unreadable" in r for r in reasons) == 3
        assert not list(spool.glob("*.jsonl"))
    finally:
        engine.dispose()


def test_a_hung_database_is_cut_off_and_close_spools_within_the_grace(pg_url: str, tmp_path: Path):
    """A proxy that stops forwarding (a stopped server): the writer's call is cut after
    `db_timeout`, the batch spooled; `close` returns within its grace with nothing lost."""
    migrated(pg_url).dispose()
    proxy = TcpProxy(upstream(pg_url))
    settings = Settings(database_url=proxied(pg_url, proxy), db_timeout=1, db_connect_timeout=1)
    engine = gateway_engine(settings)
    direct = migrated(pg_url)
    spool = tmp_path / "spool"
    try:
        writer = ExposureLog(engine, spool, flush_interval=0.05, retry_interval=0.2, db_timeout=1)
        writer.start()
        writer.submit(record(1))
        assert writer.flush(timeout=10)  # the pool holds a live connection now
        proxy.hang()
        records = [record(u) for u in range(2, 50)]
        for r in records:
            writer.submit(r)
        start = time.monotonic()
        writer.close(grace=3)
        assert time.monotonic() - start < 6  # db_timeout + grace + slack: never stuck
        assert writer.stats.dropped == 0
        spooled = b"".join(p.read_bytes() for p in spool.glob("*.jsonl"))
        assert {r.request_id for r in records} <= {
            orjson.loads(x)["request_id"] for x in spooled.splitlines()
        }
        proxy.sever()
        proxy.restore()
        writer = ExposureLog(engine, spool, retry_interval=0.2, db_timeout=1)
        writer.start()
        assert writer.flush(timeout=20)
        writer.close()
        assert count(direct, exposures) == 49
    finally:
        proxy.sever()
        engine.dispose()
        direct.dispose()
