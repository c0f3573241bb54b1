"""Training the test arm, point-in-time by construction.

The model sees `history.until(t0)` only. Training rows come from cutoffs c < T0 (every `step`
back from T0 - W): for each, the users with a like in [c, c+W) and an event before c, their
candidates at c (unseen posts from the shared sources plus the nearest posts to their taste),
features from history before c, label = liked in [c, c+W). The latest cutoff is held out to
pick the number of trees; the final model is refit on every cutoff.

Post embeddings are computed once per (model, text) and reused from `--cache-from` artifacts
and the `post_embeddings` table, so retraining does not re-embed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from feedlab.models.artifact import save_shared
from feedlab.models.candidates import CandidateConfig
from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.history import History
from feedlab.models.test.embeddings import DEFAULT_MODEL, Embedder, EmbeddingCache, embed_texts
from feedlab.models.test.model import RetrievalConfig, scoring_request
from feedlab.models.test.scoring import PriorScorer, fit_prior
from feedlab.models.test.taste import EmbeddingFeatures, TasteConfig
from feedlab.models.training import (
    CandidateRows,
    Rows,
    TreeProgress,
    candidate_rows,
    cutoffs,
    fewest_best_trees,
    group_hit_rate,
    history_before,
    hit_rate_by_trees,
    scorer_meta,
    training_data,
    tree_bar,
    write_meta,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

FORMAT_VERSION = 1
EMBEDDINGS_FILE = "embeddings.npz"


@dataclass
class TrainConfig:
    window_days: float = 7
    step_days: float = 1
    max_cutoffs: int = 60
    valid_cutoffs: int = 7
    min_history_days: float = 14
    iterations: int = 300
    tree_step: int = 10  # the held-out cutoffs pick the number of trees in these steps
    depth: int = 4
    learning_rate: float = 0.03
    loss: str = "Logloss"
    weight_groups: bool = False
    # What CatBoost corrects the popularity prior with: user activity and the user's taste
    # in embedding space (raw counts and co-visitation drift with history length).
    ranker_columns: tuple[str, ...] = (
        "user_views",
        "user_likes",
        "user_like_rate",
        "user_events_7d",
        "user_days_active",
        "user_days_since_last",
        "emb_cos_profile",
        "emb_cos_profile_z",
        "emb_cos_contrast",
        "emb_max_recent",
        "emb_max_recent_z",
        "emb_knn_like_rate",
    )
    text_dim: int = 32
    neighbours: int = 50
    seed: int = 0
    threads: int = 2
    embedding_model: str = DEFAULT_MODEL
    taste: TasteConfig = field(default_factory=TasteConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)

    @classmethod
    def from_dict(cls, raw: dict) -> TrainConfig:
        raw = dict(raw)
        if "ranker_columns" in raw:
            raw["ranker_columns"] = tuple(raw["ranker_columns"])
        taste = TasteConfig(**raw.pop("taste", {}))
        retrieval = dict(raw.pop("retrieval", {}))
        shared = CandidateConfig(**retrieval.pop("shared", {}))
        return cls(**raw, taste=taste, retrieval=RetrievalConfig(shared=shared, **retrieval))


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


def labelled_candidates(
    history: History,
    posts: PostCatalog,
    users: UserProfiles,
    vectors: np.ndarray,
    points: list[datetime],
    config: TrainConfig,
    progress: bool = True,
) -> CandidateRows:
    """The arm's labelled candidate rows at each of `points` (features from `history` before
    the point, label = liked in the window after it), and the fitted text pieces."""
    embedding = EmbeddingFeatures(vectors, config.taste)
    return candidate_rows(
        history,
        posts,
        users,
        points,
        config,
        lambda builder, covisit: partial(
            scoring_request, builder, covisit, embedding, config.retrieval, exclude_seen=True
        ),
        "test: labelled rows",
        progress,
        extra_blocks=[embedding],
    )


def _pool(rows: Rows, scorer: PriorScorer, weight_groups: bool):
    """The correction's training pool: ranker columns, label, the prior as baseline."""
    from catboost import Pool

    return Pool(
        scorer.ranker_matrix(rows.matrix),
        rows.labels.astype(np.float32),
        weight=rows.group_weights() if weight_groups else None,
        baseline=scorer.prior(rows.matrix),
    )


def fit_correction(
    rows: Rows, scorer: PriorScorer, config: TrainConfig, iterations: int, bar: Any = None
):
    """CatBoost fitted to correct `scorer`'s prior on `rows` from its ranker columns (`bar`:
    a progress bar moved per tree)."""
    from catboost import CatBoost

    ranker = CatBoost(
        {
            "loss_function": config.loss,
            "iterations": iterations,
            "depth": config.depth,
            "learning_rate": config.learning_rate,
            "random_seed": config.seed,
            "thread_count": config.threads,
            "verbose": False,
            "allow_writing_files": False,
        }
    )
    callbacks = [TreeProgress(bar)] if bar is not None else None
    return ranker.fit(_pool(rows, scorer, config.weight_groups), callbacks=callbacks)


def train(
    history: History,
    posts: PostCatalog,
    users: UserProfiles | None,
    t0: datetime,
    out: Path,
    config: TrainConfig | None = None,
    engine: Engine | None = None,
    cache_from: Path | None = None,
    progress: bool = True,
) -> dict:
    """Train on events before `t0`, write the artifact folder `out`, return its meta.
    `engine`: where the `post_embeddings` cache lives (None: no table cache); `cache_from`:
    an earlier artifact whose vectors may be reused (default: `out` itself)."""
    config = config or TrainConfig()
    started = time.perf_counter()
    past, span = history_before(history, t0)
    users = users or UserProfiles.empty()
    embed_started = time.perf_counter()
    vectors, hashes, embedder, _, fresh = post_embeddings(
        posts, config.embedding_model, engine, cache_from or out, progress
    )
    embed_seconds = time.perf_counter() - embed_started
    points = cutoffs(past, t0, config)
    labelled = labelled_candidates(past, posts, users, vectors, points, config, progress)
    per_cutoff = labelled.per_cutoff
    n_valid = min(config.valid_cutoffs, len(per_cutoff) // 2)
    fit_rows = Rows.concat(per_cutoff[:-n_valid])
    valid_rows = Rows.concat(per_cutoff[-n_valid:])
    all_rows = Rows.concat(per_cutoff)

    with tree_bar("test: CatBoost trees", config.iterations, progress) as bar:
        column, coef, intercept = fit_prior(
            fit_rows.matrix,
            fit_rows.labels,
            fit_rows.groups,
            fit_rows.columns,
            lambda score: group_hit_rate(score, fit_rows),
        )
        ranker_columns = [c for c in config.ranker_columns if c in fit_rows.columns]
        scorer = PriorScorer(fit_rows.columns, ranker_columns, column, coef, intercept, 0)
        scorer.ranker = fit_correction(fit_rows, scorer, config, config.iterations, bar)
        by_trees = hit_rate_by_trees(
            scorer.ranker,
            scorer.prior(valid_rows.matrix),
            scorer.ranker_matrix(valid_rows.matrix),
            valid_rows,
            config.tree_step,
        )
        best = fewest_best_trees(by_trees)
        metrics = {
            "valid_cutoffs": [c.isoformat() for c in points[-n_valid:]],
            "valid_groups": len(np.unique(valid_rows.groups)),
            "valid_hit_rate_at_5_candidates": by_trees[best],
            "valid_hit_rate_at_5_candidates_prior": by_trees[0],
            "trees": best,
        }
        bar.total += max(best, 1)
        final = fit_correction(all_rows, scorer, config, max(best, 1), bar)
        scorer.ranker, scorer.trees = final, best

    ranker_idx = [all_rows.columns.index(c) for c in ranker_columns]
    importance = final.get_feature_importance(type="PredictionValuesChange").round(4).tolist()
    importances = dict(zip([all_rows.columns[i] for i in ranker_idx], importance, strict=True))
    save_shared(out, final, labelled.text_model, users, posts, labelled.table)
    np.savez(
        out / EMBEDDINGS_FILE,
        post_ids=posts.post_ids,
        text_hashes=np.array(hashes, dtype=str),
        vectors=vectors,
    )
    meta = {
        "model": "test",
        "format": FORMAT_VERSION,
        "trained_at": datetime.now().replace(microsecond=0).isoformat(),
        "t0": t0.isoformat(),
        "training_data": training_data(past, span, points, config.window_days, all_rows),
        "embedding": {
            "model": embedder.name,
            "dim": int(vectors.shape[1]),
            "posts": len(posts),
            "encoded_now": fresh,
            "seconds": round(embed_seconds, 1),
        },
        **scorer_meta(config, all_rows, scorer, labelled.table, labelled.encoder),
        "metrics": metrics,
        "feature_importance": importances,
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    return write_meta(out, "test", t0, meta)
