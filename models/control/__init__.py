"""The control arm: classic point-in-time features + a CatBoost ranker.

`load(artifact_dir, history, posts=None)` is what `models.registry.load_model` calls;
`train(...)` (models.control.train) writes the artifact folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.candidates import CandidateConfig
from models.catalog import PostCatalog, UserProfiles
from models.control.model import ControlRecommender, DailyCoVisitation, Scorer
from models.features import FeatureBuilder, PostTable, ProfileEncoder, TextSVD
from models.history import History

__all__ = ["ControlRecommender", "load"]


def load(
    artifact_dir: str | Path,
    history: History,
    posts: PostCatalog | None = None,
    users: UserProfiles | None = None,
) -> ControlRecommender:
    """The trained control model on `history`; `posts` (the live catalog) may hold posts the
    artifact never saw: they get text vectors now (co-visitation is refitted daily anyway). `users`
    defaults to the profiles stored at training time."""
    from catboost import CatBoost

    path = Path(artifact_dir)
    meta = json.loads((path / "meta.json").read_text())
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
    covisit = DailyCoVisitation(history, catalog.post_ids, meta["config"]["neighbours"])
    ranker = CatBoost()
    ranker.load_model(str(path / "model.cbm"))
    params = meta["scorer"]
    needed = [params["prior_column"], *params["ranker_columns"]]
    scorer = Scorer(columns=needed, ranker=ranker, **params)
    encoder = ProfileEncoder(**meta["profile_encoder"])
    if users is None:
        users = UserProfiles.load(path / "users.pkl")
    builder = FeatureBuilder(history, table, users, encoder)
    config = CandidateConfig(**meta["config"]["candidates"])
    return ControlRecommender(builder, covisit, scorer, needed, config, meta["version"])
