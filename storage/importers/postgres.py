"""The origin social network's tables read from a PostgreSQL database by URL:
user_data(user_id, gender, age, country, city, exp_group, os, source),
post_text_df(post_id, text, topic) and feed_data(timestamp, user_id, post_id, action, target).

Same validation as the CSV layout; errors name the table and the row's position in it.
Columns beyond the known ones in user_data (such as `exp_group`) land in `attributes`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from feedlab.storage.importing import ImportSummary, checked, load_world, posts_frame, users_frame
from feedlab.storage.validation import ImportValidationError, Rows
from sqlalchemy import Engine, create_engine, inspect, text

TABLES = {
    "user_data": ("user_id",),
    "post_text_df": ("post_id", "text", "topic"),
    "feed_data": ("timestamp", "user_id", "post_id", "action", "target"),
}
FEED_CHUNK_ROWS = 500_000


def _table_rows(source: Engine, table: str) -> Rows:
    frame = pd.read_sql(text(f'SELECT * FROM "{table}"'), source)
    return Rows(table, frame, np.arange(1, len(frame) + 1, dtype=np.int64), unit="row")


def _feed_batches(source: Engine, columns: list[str]) -> Iterator[Rows]:
    wanted = [c for c in (*TABLES["feed_data"], "event_id") if c in columns]
    select = ", ".join(f'"{c}"' for c in wanted)
    first = 1
    with source.connect().execution_options(stream_results=True) as conn:
        for chunk in pd.read_sql(
            text(f'SELECT {select} FROM "feed_data"'), conn, chunksize=FEED_CHUNK_ROWS
        ):
            yield Rows("feed_data", chunk, np.arange(first, first + len(chunk)), unit="row")
            first += len(chunk)


def import_postgres(source_url: str, engine: Engine, *, replace: bool = False) -> ImportSummary:
    source = create_engine(source_url)
    try:
        tables = set(inspect(source).get_table_names())
        columns: dict[str, list[str]] = {}
        for table, required in TABLES.items():
            if table not in tables:
                raise ImportValidationError(table, None, None, "table not found in the source")
            columns[table] = [c["name"] for c in inspect(source).get_columns(table)]
            lacking = [c for c in required if c not in columns[table]]
            if lacking:
                raise ImportValidationError(
                    table, None, None, f"missing required column(s) {', '.join(lacking)}"
                )
        users = users_frame(_table_rows(source, "user_data"))
        posts = posts_frame(_table_rows(source, "post_text_df"))
        return load_world(
            engine,
            users,
            posts,
            lambda checker: checked(checker, _feed_batches(source, columns["feed_data"])),
            replace=replace,
            desc="feed_data",
        )
    finally:
        source.dispose()
