"""The feed CSV layout (README, "Data"): users.csv, posts.csv and feed.csv (`.gz` works too).

users/posts are read with the `csv` module so reported line numbers stay exact even when a
quoted post text spans several lines; feed.csv is read by pandas in chunks (one event per line).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from feedlab.storage.importing import ImportSummary, checked, load_world, posts_frame, users_frame
from feedlab.storage.validation import ImportValidationError, Rows
from sqlalchemy import Engine

FEED_CHUNK_ROWS = 1_000_000


def open_text(path: Path) -> io.TextIOBase:
    """A text handle on a plain or gzipped UTF-8 file (a BOM is dropped)."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def read_csv_rows(path: Path) -> Rows:
    """All records of a small CSV as strings, with the physical line each record starts on."""
    name = path.name
    with open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise ImportValidationError(name, 1, None, "is empty (a header line is required)")
        header = [h.strip() for h in header]
        records, lines = [], []
        start = reader.line_num + 1
        for record in reader:
            if not record:
                start = reader.line_num + 1
                continue
            if len(record) != len(header):
                raise ImportValidationError(
                    name, start, None, f"has {len(record)} fields, the header has {len(header)}"
                )
            records.append(record)
            lines.append(start)
            start = reader.line_num + 1
    frame = pd.DataFrame(records, columns=header, dtype=object)
    return Rows(name, frame, np.asarray(lines, dtype=np.int64))


def read_feed_batches(path: Path, chunk_rows: int = FEED_CHUNK_ROWS) -> Iterator[Rows]:
    """feed.csv in chunks; line = header line + position (one event per line)."""
    name = path.name
    try:
        reader = pd.read_csv(  # clean numeric columns parse in C; validation does the rest
            path,
            dtype={"action": str, "event_id": str},
            keep_default_na=False,
            na_values=[""],
            chunksize=chunk_rows,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
        first_line = 2
        for chunk in reader:
            chunk.columns = [str(c).strip() for c in chunk.columns]
            lines = np.arange(first_line, first_line + len(chunk), dtype=np.int64)
            first_line += len(chunk)
            yield Rows(name, chunk, lines)
    except pd.errors.ParserError as exc:
        raise ImportValidationError(name, None, None, f"is not valid CSV: {exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise ImportValidationError(name, 1, None, "is empty (a header line is required)") from exc


def import_csv(
    engine: Engine,
    users_csv: Path,
    posts_csv: Path,
    feed_csv: Path,
    *,
    replace: bool = False,
    chunk_rows: int = FEED_CHUNK_ROWS,
) -> ImportSummary:
    """Validate users and posts fully, then stream-validate and load the feed in one transaction."""
    users = users_frame(read_csv_rows(users_csv))
    posts = posts_frame(read_csv_rows(posts_csv))
    return load_world(
        engine,
        users,
        posts,
        lambda checker: checked(checker, read_feed_batches(feed_csv, chunk_rows)),
        replace=replace,
        desc=feed_csv.name,
    )
