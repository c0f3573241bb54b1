"""Small database helpers the gateway shares between its writers."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Table


def insert_ignore(
    conn: Connection,
    table: Table,
    rows: Sequence[dict],
    keys: Sequence[str],
    returning: bool = False,
):
    """INSERT ... ON CONFLICT (keys) DO NOTHING on PostgreSQL and SQLite, so replays and
    retries are idempotent. With `returning`, the result yields the keys of the new rows."""
    if not rows:
        return None
    name = conn.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"insert_ignore: unsupported database {name!r}")
    stmt = insert(table).on_conflict_do_nothing(index_elements=list(keys))
    if returning:
        stmt = stmt.returning(*(table.c[k] for k in keys))
    return conn.execute(stmt, list(rows))
