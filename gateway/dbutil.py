"""Small database helpers the gateway shares between its writers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, CursorResult, Table
from sqlalchemy.dialects import postgresql, sqlite


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
