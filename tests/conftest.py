"""Shared fixtures: a fresh SQLite file and a fresh PostgreSQL database per test.

PostgreSQL comes from FEEDLAB_TEST_POSTGRES_URL (default: the local trust-auth server), Redis
from FEEDLAB_TEST_REDIS_URL (default: the local server, db 9). Outside CI an unreachable server
skips the tests that need it with the reason; with CI=true it fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from tests.support.db import migrated
from tests.support.redis import PrivateRedis, RedisSpace, redis_unavailable, shared_space

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PG_URL = os.environ.get(
    "FEEDLAB_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _admin_engine() -> Engine:
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        with _admin_engine().connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # any driver error means "not reachable" here
        return f"PostgreSQL at {PG_URL} unreachable: {exc.__class__.__name__}: {exc}"
    return None


def require_postgres() -> None:
    _required(postgres_available())


def _required(reason: str | None) -> None:
    """Nothing when `reason` is None; else fail under CI, skip elsewhere, with the reason."""
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def redis_space() -> Iterator[RedisSpace]:
    """The shared Redis (FEEDLAB_TEST_REDIS_URL) under a key prefix of this test only."""
    _required(redis_unavailable())
    yield from shared_space()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A running redis-server of this test only, which it may stop and start."""
    try:
        server = PrivateRedis(tmp_path)
    except FileNotFoundError as exc:
        _required(str(exc))
        raise
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a brand-new, empty PostgreSQL database, dropped after the test."""
    require_postgres()
    name = f"feedlab_t_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'feedlab.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return request.getfixturevalue(fixture)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated engine on each backend."""
    eng = migrated(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    eng = migrated(pg_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; tests that need it skip when it is absent (a user's machine), never in CI."""
    if not SHARED_DATA.is_dir():
        if IN_CI:
            pytest.fail(f"CI=true and {SHARED_DATA} is missing", pytrace=False)
        pytest.skip(f"{SHARED_DATA} not present (real datasets are not redistributed)")
    return SHARED_DATA
