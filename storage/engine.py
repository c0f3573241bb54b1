"""Engines for a database URL, and the schema migrations, which run only when asked:
`feedlab init-db`, the gateway's start and the commands that fill a database call `upgrade`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine for `url` (see `feedlab.settings.database_url` for the default); the schema is
    left as it is."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif make_url(url).get_driver_name() == "psycopg2":
        # batches of rows per round trip for executemany (e.g. the gateway's exposure and
        # feed writes): ~4x less time and CPU than psycopg2's row-by-row default
        engine = create_engine(url, pool_pre_ping=True, executemany_mode="values_plus_batch")
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def upgrade(engine: Engine) -> None:
    """Create the schema, or bring it to the latest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _sqlite_pragmas(dbapi_conn: Any, _record: object) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
