"""MovieLens 100K straight from ../shared/data into a History and catalogs, without a database.

Only a stand-in for benchmarks while the product importer (`feedlab import movielens`) is the
way to load it into a database; the mapping follows ../shared/data/README.md.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np

from models.catalog import PostCatalog, UserProfiles
from models.history import History

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "movielens-100k"


def load(folder: Path = DATA) -> tuple[History, PostCatalog, UserProfiles]:
    with gzip.open(folder / "u.data.gz", "rt") as f:
        raw = np.loadtxt(f, dtype=np.int64)
    users, items, ratings, ts = raw.T
    liked = ratings >= 4
    history = History.from_arrays(
        np.concatenate([ts, ts[liked]]),
        np.concatenate([users, users[liked]]),
        np.concatenate([items, items[liked]]),
        np.concatenate([np.zeros(len(ts), bool), np.ones(int(liked.sum()), bool)]),
    )
    genres = [line.split("|")[0] for line in (folder / "u.genre").read_text().splitlines() if line]
    plots = {}
    with open(folder / "plots.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            plots[int(row["item_id"])] = row["plot"]
    ids, texts, topics = [], [], []
    for line in (folder / "u.item").read_text(encoding="latin-1").splitlines():
        parts = line.split("|")
        flags = [genres[i] for i, v in enumerate(parts[5:24]) if v == "1"]
        ids.append(int(parts[0]))
        texts.append(" ".join([parts[1], " ".join(flags), plots.get(int(parts[0]), "")]))
        topics.append(flags[0] if flags else None)
    records, user_ids = [], []
    for line in (folder / "u.user").read_text().splitlines():
        uid, age, gender, occupation, zipcode = line.split("|")
        user_ids.append(int(uid))
        records.append(
            {"age": int(age), "gender": gender, "occupation": occupation, "region": zipcode[:1]}
        )
    return (
        history,
        PostCatalog.from_records(ids, texts, topics),
        UserProfiles.from_records(user_ids, records),
    )
