"""The artifact files both arms write and read the same way: the CatBoost ranker, the text
SVD, the user profiles and the post table (ids, topics, text vectors)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.features import PostTable, ProfileEncoder, TextSVD


def save_shared(
    out: Path,
    ranker: Any,
    text_model: TextSVD,
    users: UserProfiles,
    posts: PostCatalog,
    table: PostTable,
) -> None:
    """Write the files every arm's artifact holds into `out` (created if missing)."""
    out.mkdir(parents=True, exist_ok=True)
    ranker.save_model(str(out / "model.cbm"))
    text_model.save(out / "text_svd.pkl")
    users.save(out / "users.pkl")
    np.savez(
        out / "posts.npz",
        post_ids=posts.post_ids,
        topics=np.array([t or "" for t in posts.topics], dtype=str),
        text_vectors=table.text_vectors,
    )


def read_meta(path: Path) -> dict:
    return json.loads((path / "meta.json").read_text())


@dataclass
class SharedArtifact:
    """What `load_shared` restores; `catalog` is the live one when given, else the saved one."""

    catalog: PostCatalog
    table: PostTable
    text_model: TextSVD
    ranker: object
    encoder: ProfileEncoder
    users: UserProfiles


def load_shared(
    path: Path, meta: dict, posts: PostCatalog | None, users: UserProfiles | None
) -> SharedArtifact:
    """Restore the shared files. With `posts` (the live catalog), posts the artifact never saw
    get text vectors now; `users` defaults to the profiles stored at training time."""
    from catboost import CatBoost

    saved = np.load(path / "posts.npz")
    saved_ids = saved["post_ids"]
    text_model = TextSVD.load(path / "text_svd.pkl")
    if posts is None:
        topics = [t or None for t in saved["topics"].tolist()]
        catalog = PostCatalog(saved_ids, [""] * len(saved_ids), topics)
        table = PostTable.build(catalog, text_model, meta["topic_vocab"])
        table.text_vectors = saved["text_vectors"]
    else:
        catalog = posts
        table = PostTable.build(catalog, text_model, meta["topic_vocab"])
        known = catalog.index.lookup(saved_ids)
        table.text_vectors[known[known >= 0]] = saved["text_vectors"][known >= 0]
    ranker = CatBoost()
    ranker.load_model(str(path / "model.cbm"))
    encoder = ProfileEncoder(**meta["profile_encoder"])
    if users is None:
        users = UserProfiles.load(path / "users.pkl")
    return SharedArtifact(catalog, table, text_model, ranker, encoder, users)
