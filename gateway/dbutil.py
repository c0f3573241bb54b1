"""Small database helpers the gateway shares between its writers."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

PG_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}
"""TCP keepalives: a peer that vanished (host down, network cut) is noticed in ~11 s even on
an idle pooled connection."""


def pg_connect_args(
    url: str, connect_timeout_s: float, statement_timeout_s: float
) -> dict[str, Any]:
    """psycopg2 arguments that bound every call on PostgreSQL (empty for other databases):
    connect timeout, server-side statement timeout, keepalives and `tcp_user_timeout` (data
    unacknowledged that long fails the connection)."""
    if make_url(url).get_backend_name() != "postgresql":
        return {}
    return {
        "connect_timeout": max(1, round(connect_timeout_s)),
        "options": f"-c statement_timeout={round(statement_timeout_s * 1000)}",
        "tcp_user_timeout": round(statement_timeout_s * 1000),
        **PG_KEEPALIVES,
    }


@contextlib.contextmanager
def bounded(engine: Engine, seconds: float, *, begin: bool = False) -> Iterator[Connection]:
    """A connection whose use is cut off after `seconds`, whatever the server does.

    A statement timeout needs a server that answers; a database that hangs (stopped process,
    a proxy that stops forwarding) leaves the client blocked in `recv` on a healthy-looking
    socket. A timer shuts the socket down from another thread, so the blocked call fails with
    a disconnect error (the pool then discards the connection). On PostgreSQL the connection
    is pinged under the same timer (engines for this helper are made without the pool's own
    unbounded pre-ping), and a stale pooled connection is replaced once. SQLite calls are not
    cut."""
    for attempt in (1, 2):
        with engine.connect() as conn:
            timer = None
            if conn.dialect.name == "postgresql":
                fd = conn.connection.dbapi_connection.fileno()  # type: ignore[union-attr]
                timer = threading.Timer(seconds, _shutdown_socket, (fd,))
                timer.daemon = True
                timer.start()
                try:
                    conn.exec_driver_sql("SELECT 1")
                except DBAPIError as exc:
                    timer.cancel()
                    if exc.connection_invalidated and attempt == 1:
                        continue  # a stale pooled connection: take a fresh one
                    raise
                conn.rollback()
            try:
                if begin:
                    with conn.begin():
                        yield conn
                else:
                    yield conn
                return
            finally:
                if timer is not None:
                    timer.cancel()


def _shutdown_socket(fd: int) -> None:
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


def insert_ignore(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    returning: bool = False,
) -> CursorResult[Any] | None:
    """INSERT ... ON CONFLICT (keys) DO NOTHING on PostgreSQL and SQLite, so replays and
    retries are idempotent. With `returning`, the result yields the keys of the new rows."""
    if not rows:
        return None
    name = conn.dialect.name
    stmt: postgresql.Insert | sqlite.Insert
    if name == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    elif name == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    else:
        raise NotImplementedError(f"insert_ignore: unsupported database {name!r}")
    if returning:
        return conn.execute(stmt.returning(*(table.c[k] for k in keys)), list(rows))
    return conn.execute(stmt, list(rows))
