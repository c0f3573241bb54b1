"""Engines for a database URL, and the schema migrations, which run only when asked:
`feedlab init-db`, the gateway's start and the commands that fill a database call `upgrade`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, *, connect_args: dict | None = None, pre_ping: bool = True) -> Engine:
    """An engine for `url` (see `feedlab.settings.database_url` for the default); the schema is
    left as it is. `connect_args` go to the driver (e.g. timeouts); `pre_ping=False` for callers
    that check a pooled connection themselves, under a time bound (`gateway.dbutil.bounded`)."""
    args = connect_args or {}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, **args})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif make_url(url).get_driver_name() == "psycopg2":
        # batches of rows per round trip for executemany (e.g. the gateway's exposure and
        # feed writes): ~4x less time and CPU than psycopg2's row-by-row default
        engine = create_engine(
            url,
            pool_pre_ping=pre_ping,
            executemany_mode="values_plus_batch",
            connect_args=args,
        )
    else:
        engine = create_engine(url, pool_pre_ping=pre_ping, connect_args=args)
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
