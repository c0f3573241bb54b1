"""MovieLens 100K (GroupLens: u.user, u.item, u.genre, u.data) mapped onto users/posts/feed.

- users: age and gender as given; occupation, zip and the zip's first digit (`zip_region`) go to
  `attributes`; country is "US"; for a 5-digit zip, `city` holds the US ZIP region of its first
  digit (e.g. "US-9 Pacific"), NULL for the few non-US (Canadian) postcodes.
- posts: one per movie; text = "<title>. Genres: <g1, g2>. <plot from plots.tsv, if any>";
  topic = the first genre flag in u.genre order; created_at = the release date when it parses.
- feed: each rating is a `view` at its timestamp with target 1 for ratings 4–5 (else 0); each
  rating 4–5 also yields a `like` at the same timestamp (target NULL).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from feedlab.storage import schema
from feedlab.storage.importing import ImportSummary, load_world
from feedlab.storage.validation import ImportValidationError, Rows
from sqlalchemy import Engine

LIKE_MIN_RATING = 4
ZIP_REGIONS = {
    "0": "New England",
    "1": "NY-PA-DE",
    "2": "Mid-Atlantic",
    "3": "Southeast",
    "4": "Great Lakes",
    "5": "Upper Midwest",
    "6": "Central",
    "7": "South Central",
    "8": "Mountain",
    "9": "Pacific",
}
FILES = ("u.user", "u.item", "u.genre", "u.data.gz")


def _pipe_rows(path: Path, names: list[str], encoding: str = "utf-8") -> Rows:
    """A '|'-separated file as string columns; line i+1 is row i (no header)."""
    records = []
    for number, line in enumerate(path.read_text(encoding=encoding).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != len(names):
            raise ImportValidationError(
                path.name, number, None, f"has {len(fields)} fields, expected {len(names)}"
            )
        records.append((number, fields))
    lines = np.asarray([n for n, _ in records], dtype=np.int64)
    frame = pd.DataFrame([f for _, f in records], columns=names, dtype=object)
    return Rows(path.name, frame, lines)


def read_users(folder: Path) -> pd.DataFrame:
    rows = _pipe_rows(folder / "u.user", ["user_id", "age", "gender", "occupation", "zip"])
    user_id = rows.integers("user_id", low=1)
    rows.unique(user_id, "user_id")
    age = rows.integers("age", low=0, high=150)
    gender = rows.strings("gender", required=True, choices=("M", "F"))
    occupation = rows.strings("occupation")
    zips = rows.strings("zip")
    rows.raise_first()
    us_zip = zips.fillna("").str.fullmatch(r"\d{5}")
    first = zips.fillna("").str[:1]
    region = first.map(ZIP_REGIONS)
    city = ("US-" + first + " " + region).where(us_zip, None)
    attributes = [
        {"occupation": o, "zip": z} | ({"zip_region": int(z[0])} if ok else {})
        for o, z, ok in zip(occupation, zips, us_zip, strict=True)
    ]
    return pd.DataFrame(
        {
            "user_id": user_id,
            "age": age,
            "gender": gender,
            "country": "US",
            "city": city,
            "os": None,
            "source": None,
            "attributes": attributes,
        }
    )


def read_posts(folder: Path) -> pd.DataFrame:
    genres = [
        line.split("|")[0]
        for line in (folder / "u.genre").read_text(encoding="latin-1").splitlines()
        if line.strip()
    ]
    names = ["post_id", "title", "release", "video_release", "url", *genres]
    rows = _pipe_rows(folder / "u.item", names, encoding="latin-1")
    post_id = rows.integers("post_id", low=1)
    rows.unique(post_id, "post_id")
    flags = np.column_stack([rows.integers(g, low=0, high=1).fillna(0).to_numpy() for g in genres])
    rows.raise_first()
    plots = _plots(folder / "plots.tsv")
    released = pd.to_datetime(rows.frame["release"], format="%d-%b-%Y", errors="coerce")
    texts, topics = [], []
    for pid, title, row in zip(post_id, rows.frame["title"], flags, strict=True):
        names_on = [g for g, on in zip(genres, row, strict=True) if on]
        topics.append(names_on[0] if names_on else "unknown")
        parts = [title.strip() + ".", "Genres: " + ", ".join(names_on or ["unknown"]) + "."]
        if plots.get(int(pid)):
            parts.append(plots[int(pid)])
        texts.append(" ".join(parts))
    return pd.DataFrame(
        {
            "post_id": post_id,
            "text": texts,
            "topic": topics,
            "created_at": released.astype("datetime64[us]"),
        }
    )


def _plots(path: Path) -> dict[int, str]:
    """item_id → plot summary from plots.tsv; an absent file means titles and genres only."""
    if not path.exists():
        return {}
    table = pd.read_csv(path, sep="\t", dtype={"item_id": int, "plot": str}, keep_default_na=False)
    return {int(i): p.strip() for i, p in zip(table["item_id"], table["plot"], strict=True) if p}


def read_ratings(folder: Path) -> Rows:
    path = folder / "u.data.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        frame = pd.read_csv(
            handle,
            sep="\t",
            header=None,
            names=["user_id", "post_id", "rating", "timestamp"],
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
        )
    return Rows(path.name, frame, np.arange(1, len(frame) + 1, dtype=np.int64))


def feed_rows(ratings: Rows) -> Rows:
    """Views for every rating plus likes for ratings >= 4, time-ordered, keeping source lines."""
    user_id = ratings.integers("user_id")
    post_id = ratings.integers("post_id")
    rating = ratings.integers("rating", low=1, high=5)
    timestamp = ratings.timestamps("timestamp")
    ratings.raise_first()
    liked = (rating >= LIKE_MIN_RATING).to_numpy(dtype=bool)
    views = pd.DataFrame(
        {
            "timestamp": timestamp,
            "user_id": user_id,
            "post_id": post_id,
            "action": schema.VIEW,
            "target": liked.astype(np.int64),
            "line": ratings.lines,
            "order": 0,
        }
    )
    likes = views[liked].assign(action=schema.LIKE, target=pd.NA, order=1)
    events = pd.concat([views, likes], ignore_index=True).sort_values(
        ["timestamp", "user_id", "post_id", "order"], kind="stable"
    )
    lines = events.pop("line").to_numpy()
    events = events.drop(columns="order").astype({"target": "Int64"})
    return Rows(ratings.source, events, lines)


def import_movielens(folder: Path, engine: Engine, *, replace: bool = False) -> ImportSummary:
    missing = [name for name in FILES if not (folder / name).exists()]
    if missing:
        raise ImportValidationError(str(folder), None, None, f"lacks {', '.join(missing)}")
    users = read_users(folder)
    posts = read_posts(folder)
    feed = feed_rows(read_ratings(folder))
    return load_world(
        engine, users, posts, lambda checker: [checker.frame(feed)], replace=replace, desc="ratings"
    )
