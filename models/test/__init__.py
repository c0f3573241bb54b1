"""The test arm: BERT sentence embeddings of post texts + the shared classic features, ranked by
CatBoost.

`load(artifact_dir, history, posts=None, users=None)` is what `models.registry.load_model`
calls; `models.test.train.train(...)` writes the artifact folder. The sentence-transformers
model is loaded only when a post without a stored vector has to be embedded (a post newer than
the artifact, or `add_posts`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.candidates import CoVisitation
from models.catalog import PostCatalog, UserProfiles
from models.features import FeatureBuilder, PostTable, ProfileEncoder, TextSVD
from models.history import History
from models.test.embeddings import Embedder, EmbeddingCache, embed_texts
from models.test.model import ServingState, TestRecommender
from models.test.scoring import PriorScorer
from models.test.taste import EmbeddingFeatures
from models.test.train import EMBEDDINGS_FILE, TrainConfig

__all__ = ["TestRecommender", "load"]


def load(
    artifact_dir: str | Path,
    history: History,
    posts: PostCatalog | None = None,
    users: UserProfiles | None = None,
    embedding_model: str | None = None,
) -> TestRecommender:
    """The trained test model on `history`. `posts` (the live catalog) may hold posts the
    artifact never saw: they are embedded now (texts needed) and get no co-visitation
    neighbours. `users` defaults to the profiles stored at training time. `embedding_model`
    overrides where the artifact's embedding model is loaded from (same model, other path)."""
    from catboost import CatBoost

    path = Path(artifact_dir)
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("model") != "test":
        raise ValueError(f"artifact: {path} holds a {meta.get('model')!r} model, not 'test'")
    config = TrainConfig.from_dict(meta["config"])
    embedder = Embedder(embedding_model or meta["embedding"]["model"])
    cache = EmbeddingCache(embedder.name)
    saved_emb = np.load(path / EMBEDDINGS_FILE)
    cache.update(saved_emb["text_hashes"].tolist(), saved_emb["vectors"])
    saved = np.load(path / "posts.npz")
    saved_ids = saved["post_ids"]
    text_model = TextSVD.load(path / "text_svd.pkl")
    if posts is None:
        topics = [t or None for t in saved["topics"].tolist()]
        catalog = PostCatalog(saved_ids, [""] * len(saved_ids), topics)
        table = PostTable.build(catalog, text_model, meta["topic_vocab"])
        table.text_vectors = saved["text_vectors"]
        vectors = saved_emb["vectors"].astype(np.float32)
    else:
        catalog = posts
        table = PostTable.build(catalog, text_model, meta["topic_vocab"])
        known = catalog.index.lookup(saved_ids)
        table.text_vectors[known[known >= 0]] = saved["text_vectors"][known >= 0]
        vectors, _, _ = embed_texts(embedder, catalog.texts, cache)
    covisit = CoVisitation.load(path / "covisit.npz").reindexed(saved_ids, catalog.post_ids)
    ranker = CatBoost()
    ranker.load_model(str(path / "model.cbm"))
    scorer = PriorScorer(meta["columns"], ranker=ranker, **meta["scorer"])
    encoder = ProfileEncoder(**meta["profile_encoder"])
    if users is None:
        users = UserProfiles.load(path / "users.pkl")
    embedding = EmbeddingFeatures(vectors, config.taste)
    builder = FeatureBuilder(history, table, users, encoder, extra_blocks=[embedding])
    return TestRecommender(
        ServingState(builder, covisit, embedding),
        scorer,
        config.retrieval,
        meta["version"],
        embedder,
        cache,
        text_model,
    )
