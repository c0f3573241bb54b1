"""The test arm: the shared ranker plus what a sentence-embedding model knows about post texts.

The arm declares its embedding model (`embeddings.py`), its features and its retrieval source
(`taste.py`: similarity of each candidate to the user's taste, and the posts nearest to it);
everything else is `models.ranker`. `load(artifact_dir, history, posts=None, users=None)` is
what `models.registry.load_model` calls; `train(...)` writes the artifact folder. The
sentence-transformers model is loaded only when a post without a stored vector has to be
embedded (a post newer than the artifact, or `add_posts`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from feedlab.models.candidates import CandidateSource
from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.features import USER_NAMES, FeatureBlock, PostTable
from feedlab.models.history import History
from feedlab.models.ranker import RankedRecommender, Ranker, RankerConfig, TrainingSet
from feedlab.models.test.embeddings import (
    DEFAULT_MODEL,
    Embedder,
    EmbeddingCache,
    embed_texts,
)
from feedlab.models.test.taste import EmbeddingFeatures, NearestToTaste, TasteConfig

if TYPE_CHECKING:
    from sqlalchemy import Engine

NAME = "test"
EMBEDDINGS_FILE = "embeddings.npz"
# What CatBoost corrects the popularity prior with: user activity and the user's taste in
# embedding space (raw counts and co-visitation drift with history length).
RANKER_COLUMNS = (
    *USER_NAMES,
    "emb_cos_profile",
    "emb_cos_profile_z",
    "emb_cos_contrast",
    "emb_max_recent",
    "emb_max_recent_z",
    "emb_knn_like_rate",
)


def config(**overrides: Any) -> RankerConfig:
    """The arm's ranker configuration (`overrides`: any other `RankerConfig` field)."""
    return RankerConfig(**{"ranker_columns": RANKER_COLUMNS, **overrides})


@dataclass
class EmbeddingConfig:
    model: str = DEFAULT_MODEL
    taste: TasteConfig = field(default_factory=TasteConfig)
    nearest: int = 100  # candidates retrieved by similarity to the taste


@dataclass
class EmbeddingExtension:
    """The arm's part of the ranker: embedding features and retrieval for a catalog, with the
    vectors from `cache` (texts missing from it are embedded on the spot)."""

    config: EmbeddingConfig
    embedder: Embedder
    cache: EmbeddingCache

    def parts(
        self, history: History, table: PostTable
    ) -> tuple[list[FeatureBlock], list[CandidateSource]]:
        vectors, _, _ = embed_texts(self.embedder, table.catalog.texts, self.cache)
        features = EmbeddingFeatures(vectors, self.config.taste)
        return [features], [NearestToTaste(features, self.config.nearest)]


def post_embeddings(
    posts: PostCatalog,
    model: str | None = None,
    engine: Engine | None = None,
    cache_from: Path | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, list[str], Embedder, EmbeddingCache, int]:
    """Vectors of every catalog post, reusing an earlier artifact's and the table's vectors of
    the same model; fresh ones are written back to the table. Last value: how many were
    encoded now."""
    embedder = Embedder(model)
    cache = EmbeddingCache(embedder.name)
    if cache_from is not None and (cache_from / EMBEDDINGS_FILE).is_file():
        load_artifact_vectors(cache_from, cache)
    if engine is not None:
        cache.load_table(engine)
    vectors, hashes, fresh = embed_texts(embedder, posts.texts, cache, progress=progress)
    if engine is not None and fresh:
        cache.save_table(engine, posts.post_ids.tolist(), hashes, vectors)
    return vectors, hashes, embedder, cache, fresh


def load_artifact_vectors(path: Path, cache: EmbeddingCache) -> None:
    """Add an artifact's vectors to `cache` when they were made by the same model."""
    meta_path = path / "meta.json"
    if meta_path.is_file():
        name = json.loads(meta_path.read_text()).get("embedding", {}).get("model")
        if name is not None and name != cache.model_name:
            return
    saved = np.load(path / EMBEDDINGS_FILE)
    cache.update(saved["text_hashes"].tolist(), saved["vectors"])


def train(
    data: TrainingSet,
    out: Path,
    ranker_config: RankerConfig | None = None,
    embedding: EmbeddingConfig | None = None,
    engine: Engine | None = None,
    cache_from: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train on events before `data.t0`, write the artifact folder `out`, return its meta.
    `engine`: where the `post_embeddings` cache lives (None: no table cache); `cache_from`:
    an earlier artifact whose vectors may be reused (default: `out` itself)."""
    import time

    embedding = embedding or EmbeddingConfig()
    posts = data.posts
    started = time.perf_counter()
    vectors, hashes, embedder, cache, fresh = post_embeddings(
        posts, embedding.model, engine, cache_from or out, progress
    )
    embed_seconds = time.perf_counter() - started
    extension = EmbeddingExtension(embedding, embedder, cache)
    ranker = Ranker(ranker_config or config(), extension).fit(data, progress, NAME)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(
        out / EMBEDDINGS_FILE,
        post_ids=posts.post_ids,
        text_hashes=np.array(hashes, dtype=str),
        vectors=vectors,
    )
    arm = {
        "embedding_config": asdict(embedding),
        "embedding": {
            "model": embedder.name,
            "dim": int(vectors.shape[1]),
            "posts": len(posts),
            "encoded_now": fresh,
            "seconds": round(embed_seconds, 1),
        },
    }
    return ranker.save(out, NAME, arm)


def load(
    artifact_dir: str | Path,
    history: History,
    posts: PostCatalog | None = None,
    users: UserProfiles | None = None,
    embedding_model: str | None = None,
) -> RankedRecommender:
    """The trained test model on `history`. `posts` (the live catalog) may hold posts the
    artifact never saw: they are embedded now. `users` defaults to the profiles stored at
    training time. `embedding_model` overrides where the artifact's embedding model is loaded
    from (same model, other path)."""
    path = Path(artifact_dir)
    meta = json.loads((path / "meta.json").read_text())
    raw = dict(meta.get("embedding_config", {}))
    embedding = EmbeddingConfig(**{**raw, "taste": TasteConfig(**raw.get("taste", {}))})
    embedder = Embedder(embedding_model or meta.get("embedding", {}).get("model"))
    cache = EmbeddingCache(embedder.name)
    ranker = Ranker.load(path, NAME, EmbeddingExtension(embedding, embedder, cache))
    saved = np.load(path / EMBEDDINGS_FILE)
    cache.update(saved["text_hashes"].tolist(), saved["vectors"])
    return ranker.recommender(history, posts, users)
