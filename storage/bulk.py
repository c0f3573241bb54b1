"""Fast bulk loading of DataFrames into the feedlab tables, inside the caller's transaction.

PostgreSQL gets `COPY ... FROM STDIN` fed from an in-memory CSV buffer, one chunk at a time, so
tens of millions of feed rows load at COPY speed without holding one giant string. SQLite gets a
plain `executemany` on the raw cursor (SQLite inserts are already fast inside one transaction).
Nothing here commits: the caller's `engine.begin()` block makes a whole import all-or-nothing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
from sqlalchemy import JSON, Connection, DateTime, Integer, Table
from sqlalchemy.engine.interfaces import DBAPIConnection
from tqdm import tqdm

CHUNK_ROWS = 200_000
PG_NULL = "\\N"
# SQLAlchemy's own SQLite DATETIME storage format: stored strings must match it exactly, or
# string comparisons in SQL (`timestamp < :t`) would order equal instants wrongly.
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


def bulk_load(
    conn: Connection,
    table: Table,
    frame: pd.DataFrame,
    *,
    chunk_rows: int = CHUNK_ROWS,
    progress: tqdm | None = None,
) -> int:
    """Insert every row of `frame` (columns named like `table`'s) and return the row count."""
    columns = list(frame.columns)
    unknown = [c for c in columns if c not in table.c]
    if unknown:
        raise ValueError(f"table {table.name} has no column(s) {unknown}")
    total = 0
    for start in range(0, len(frame), chunk_rows):
        chunk = _typed(table, frame.iloc[start : start + chunk_rows])
        if conn.dialect.name == "postgresql":
            _copy_chunk(conn, table, chunk)
        else:
            _executemany_chunk(conn, table, chunk)
        total += len(chunk)
        if progress is not None:
            progress.update(len(chunk))
    return total


@contextmanager
def indexes_deferred(conn: Connection, table: Table) -> Iterator[None]:
    """Drop `table`'s secondary indexes for a load into an empty table and rebuild them after.

    Building an index once is several times faster than updating it row by row. Both backends
    have transactional DDL, so if the load fails the caller's rollback restores the indexes.
    """
    raw = _dbapi(conn)
    if conn.dialect.name == "sqlite" and not raw.in_transaction:
        raw.execute("BEGIN")  # pysqlite only opens a transaction implicitly before DML
    for index in table.indexes:
        index.drop(conn)
    yield
    for index in table.indexes:
        index.create(conn)


def _typed(table: Table, chunk: pd.DataFrame) -> pd.DataFrame:
    """Cast each column to what its SQL type needs on the wire (nullable ints, JSON text)."""
    out = {}
    for name in chunk.columns:
        col_type = table.c[name].type
        values = chunk[name]
        if isinstance(col_type, Integer):
            values = values.astype("Int64")
        elif isinstance(col_type, JSON):
            values = values.map(lambda v: None if v is None else json.dumps(v), na_action="ignore")
        elif isinstance(col_type, DateTime):
            values = pd.to_datetime(values)
        out[name] = values
    return pd.DataFrame(out, index=chunk.index)


def _copy_chunk(conn: Connection, table: Table, chunk: pd.DataFrame) -> None:
    chunk = chunk.assign(
        **{
            name: _int_text(chunk[name])
            for name in chunk.columns
            if isinstance(chunk[name].dtype, pd.Int64Dtype)
        }
    )
    buf = io.StringIO()
    chunk.to_csv(buf, header=False, index=False, na_rep=PG_NULL, date_format="%Y-%m-%d %H:%M:%S.%f")
    buf.seek(0)
    cols = ", ".join(f'"{c}"' for c in chunk.columns)
    sql = f"COPY \"{table.name}\" ({cols}) FROM STDIN WITH (FORMAT csv, NULL '{PG_NULL}')"
    cursor = _dbapi(conn).cursor()
    try:
        cursor.copy_expert(sql, buf)
    finally:
        cursor.close()


def _int_text(values: pd.Series) -> np.ndarray:
    """Nullable ints as CSV text in one vectorised step (pandas formats Int64 cell by cell)."""
    text = values.to_numpy(dtype=np.int64, na_value=0).astype(str).astype(object)
    return np.where(values.isna().to_numpy(), PG_NULL, text)


def _executemany_chunk(conn: Connection, table: Table, chunk: pd.DataFrame) -> None:
    chunk = chunk.copy()
    for name in chunk.columns:
        if isinstance(table.c[name].type, DateTime):
            chunk[name] = chunk[name].dt.strftime(SQLITE_DATETIME)
    rows = chunk.astype(object).where(chunk.notna(), None).to_numpy().tolist()
    cols = ", ".join(f'"{c}"' for c in chunk.columns)
    marks = ", ".join("?" for _ in chunk.columns)
    cursor = _dbapi(conn).cursor()
    try:
        cursor.executemany(f'INSERT INTO "{table.name}" ({cols}) VALUES ({marks})', rows)
    finally:
        cursor.close()


def _dbapi(conn: Connection) -> DBAPIConnection:
    """The driver's connection under `conn` (checked out, so never None here)."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    return raw
