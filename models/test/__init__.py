"""The test arm: BERT sentence embeddings of post texts + the shared classic features, ranked by
CatBoost.

`load(artifact_dir, history, posts=None, users=None)` is what `models.registry.load_model`
calls; `models.test.train.train(...)` writes the artifact folder. The sentence-transformers
model is loaded only when a post without a stored vector has to be embedded (a post newer than
the artifact, or `add_posts`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from feedlab.models.artifact import load_shared, read_meta
from feedlab.models.candidates import DailyCoVisitation
from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.features import FeatureBuilder
from feedlab.models.history import History
from feedlab.models.test.embeddings import Embedder, EmbeddingCache, embed_texts
from feedlab.models.test.model import ServingState, TestRecommender
from feedlab.models.test.scoring import PriorScorer
from feedlab.models.test.taste import EmbeddingFeatures
from feedlab.models.test.train import EMBEDDINGS_FILE, TrainConfig

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
    path = Path(artifact_dir)
    meta = read_meta(path)
    if meta.get("model") != "test":
        raise ValueError(f"artifact: {path} holds a {meta.get('model')!r} model, not 'test'")
    config = TrainConfig.from_dict(meta["config"])
    embedder = Embedder(embedding_model or meta["embedding"]["model"])
    cache = EmbeddingCache(embedder.name)
    saved_emb = np.load(path / EMBEDDINGS_FILE)
    cache.update(saved_emb["text_hashes"].tolist(), saved_emb["vectors"])
    shared = load_shared(path, meta, posts, users)
    catalog = shared.catalog
    if posts is None:
        vectors = saved_emb["vectors"].astype(np.float32)
    else:
        vectors, _, _ = embed_texts(embedder, catalog.texts, cache)
    covisit = DailyCoVisitation(history, catalog.post_ids, config.neighbours)
    scorer = PriorScorer(meta["columns"], ranker=shared.ranker, **meta["scorer"])
    embedding = EmbeddingFeatures(vectors, config.taste)
    builder = FeatureBuilder(
        history, shared.table, shared.users, shared.encoder, extra_blocks=[embedding]
    )
    return TestRecommender(
        ServingState(builder, covisit, embedding),
        scorer,
        config.retrieval,
        meta["version"],
        embedder,
        cache,
        shared.text_model,
    )
