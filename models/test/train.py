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

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.candidates import CandidateConfig, CoVisitation
from models.catalog import PostCatalog, UserProfiles
from models.features import FeatureBuilder, PostTable, ProfileEncoder, TextSVD
from models.history import History
from models.test.embeddings import DEFAULT_MODEL, Embedder, EmbeddingCache, embed_texts
from models.test.model import RetrievalConfig, scoring_request
from models.test.scoring import PriorScorer, fit_prior
from models.test.taste import EmbeddingFeatures, TasteConfig

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


@dataclass
class Rows:
    matrix: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    columns: list[str]

    @classmethod
    def concat(cls, parts: list[Rows]) -> Rows:
        return cls(
            np.vstack([r.matrix for r in parts]),
            np.concatenate([r.labels for r in parts]),
            np.concatenate([r.groups for r in parts]),
            parts[0].columns,
        )

    def group_weights(self) -> np.ndarray:
        """Row weights giving each group (user-window) a total weight of 1 over its positives,
        so a user liking 40 posts a week counts as much as one liking 1."""
        positives = np.bincount(self.groups, weights=self.labels)[self.groups]
        weight = 1.0 / np.maximum(positives, 1.0)
        return weight / weight.mean()


def cutoffs(history: History, t0: datetime, config: TrainConfig) -> list[datetime]:
    """Training cutoffs, oldest first; each label window [c, c+W) ends by T0."""
    span = history.time_range()
    if span is None:
        raise ValueError("t0: no events before T0 to train on")
    window, step = timedelta(days=config.window_days), timedelta(days=config.step_days)
    # warm-up: `min_history_days`, but never more than a third of the pre-T0 span
    warmup = min(timedelta(days=config.min_history_days), (t0 - window - span[0]) / 3)
    first_allowed = span[0] + warmup
    found, c = [], t0 - window
    while c >= first_allowed and len(found) < config.max_cutoffs:
        found.append(c)
        c -= step
    if len(found) < 2:
        raise ValueError(
            f"t0: need at least two training cutoffs between {first_allowed} and {t0 - window}"
        )
    return found[::-1]


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


def rows_at(
    history: History,
    builder: FeatureBuilder,
    covisit: CoVisitation,
    embedding: EmbeddingFeatures,
    cutoff: datetime,
    config: TrainConfig,
    group_offset: int,
) -> Rows | None:
    """Labelled candidate rows of one cutoff (users without a liked candidate are skipped)."""
    labels = history.likes_by_user(cutoff, cutoff + timedelta(days=config.window_days))
    ids = builder.posts.catalog.post_ids
    parts, ys, groups, columns = [], [], [], []
    for user_id in sorted(labels):
        req = scoring_request(builder, covisit, embedding, config.retrieval, user_id, cutoff, True)
        if len(req.user.ts) == 0 or len(req.candidates) == 0:
            continue
        y = np.isin(ids[req.candidates], list(labels[user_id]))
        if not y.any():
            continue
        matrix, columns = builder.matrix(req)
        parts.append(matrix)
        ys.append(y)
        groups.append(np.full(len(y), group_offset + len(groups)))
    if not parts:
        return None
    return Rows(np.vstack(parts), np.concatenate(ys), np.concatenate(groups), columns)


def group_hit_rate(scores: np.ndarray, rows: Rows, k: int = 5) -> float:
    """Share of groups whose top-k by `scores` holds a positive (HitRate@k among candidates)."""
    hits = []
    for g in np.unique(rows.groups):
        mask = rows.groups == g
        top = np.argsort(-scores[mask], kind="stable")[:k]
        hits.append(rows.labels[mask][top].any())
    return float(np.mean(hits))


def _pool(rows: Rows, scorer: PriorScorer, weight_groups: bool):
    """The correction's training pool: ranker columns, label, the prior as baseline."""
    from catboost import Pool

    return Pool(
        rows.matrix[:, [rows.columns.index(c) for c in scorer.ranker_columns]],
        rows.labels.astype(np.float32),
        weight=rows.group_weights() if weight_groups else None,
        baseline=scorer.prior(rows.matrix),
    )


def _ranker(config: TrainConfig, iterations: int):
    from catboost import CatBoost

    return CatBoost(
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
    from tqdm import tqdm

    config = config or TrainConfig()
    started = time.perf_counter()
    past = history.until(t0)
    span = past.time_range()
    if span is None:
        raise ValueError(f"t0: no events before {t0}")
    users = users or UserProfiles.empty()
    embed_started = time.perf_counter()
    vectors, hashes, embedder, _, fresh = post_embeddings(
        posts, config.embedding_model, engine, cache_from or out, progress
    )
    embed_seconds = time.perf_counter() - embed_started
    text_model = TextSVD(config.text_dim, config.seed).fit(posts.texts)
    table = PostTable.build(posts, text_model)
    encoder = ProfileEncoder.fit(users)
    embedding = EmbeddingFeatures(vectors, config.taste)
    builder = FeatureBuilder(past, table, users, encoder, extra_blocks=[embedding])
    points = cutoffs(past, t0, config)

    per_cutoff: list[Rows] = []
    offset = 0
    for c in tqdm(points, desc="test: training rows", disable=not progress):
        covisit = CoVisitation.fit(past, c, posts.post_ids, config.neighbours)
        rows = rows_at(past, builder, covisit, embedding, c, config, offset)
        if rows is not None:
            per_cutoff.append(rows)
            offset = int(rows.groups.max()) + 1
    if len(per_cutoff) < 2:
        raise ValueError("t0: too few labelled training rows before T0 (need two cutoffs)")
    n_valid = min(config.valid_cutoffs, len(per_cutoff) // 2)
    fit_rows = Rows.concat(per_cutoff[:-n_valid])
    valid_rows = Rows.concat(per_cutoff[-n_valid:])
    all_rows = Rows.concat(per_cutoff)

    with tqdm(total=2, desc="test: CatBoost", disable=not progress) as bar:
        column, coef, intercept = fit_prior(
            fit_rows.matrix,
            fit_rows.labels,
            fit_rows.groups,
            fit_rows.columns,
            lambda score: group_hit_rate(score, fit_rows),
        )
        ranker_columns = [c for c in config.ranker_columns if c in fit_rows.columns]
        scorer = PriorScorer(fit_rows.columns, ranker_columns, column, coef, intercept, 0)
        ranker = _ranker(config, config.iterations)
        ranker.fit(_pool(fit_rows, scorer, config.weight_groups))
        scorer.ranker = ranker
        prior_valid = scorer.prior(valid_rows.matrix)
        by_trees = {
            n: group_hit_rate(prior_valid + scorer.correction(valid_rows.matrix, n), valid_rows)
            for n in range(0, config.iterations + 1, config.tree_step)
        }
        best = max(by_trees, key=lambda n: (by_trees[n], -n))
        metrics = {
            "valid_cutoffs": [c.isoformat() for c in points[-n_valid:]],
            "valid_groups": len(np.unique(valid_rows.groups)),
            "valid_hit_rate_at_5_candidates": by_trees[best],
            "valid_hit_rate_at_5_candidates_prior": by_trees[0],
            "trees": best,
        }
        bar.update()
        final = _ranker(config, max(best, 1))
        final.fit(_pool(all_rows, scorer, config.weight_groups))
        scorer.ranker, scorer.trees = final, best
        bar.update()

    ranker_idx = [all_rows.columns.index(c) for c in ranker_columns]
    importance = final.get_feature_importance(type="PredictionValuesChange").round(4).tolist()
    importances = dict(zip([all_rows.columns[i] for i in ranker_idx], importance, strict=True))
    covisit = CoVisitation.fit(past, t0, posts.post_ids, config.neighbours)
    out.mkdir(parents=True, exist_ok=True)
    final.save_model(str(out / "model.cbm"))
    text_model.save(out / "text_svd.pkl")
    users.save(out / "users.pkl")
    covisit.save(out / "covisit.npz")
    np.savez(
        out / "posts.npz",
        post_ids=posts.post_ids,
        topics=np.array([t or "" for t in posts.topics], dtype=str),
        text_vectors=table.text_vectors,
    )
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
        "training_data": {
            "first_event": span[0].isoformat(),
            "last_event": span[1].isoformat(),
            "events": len(past),
            "cutoffs": [c.isoformat() for c in points],
            "label_windows_end": (points[-1] + timedelta(days=config.window_days)).isoformat(),
            "rows": len(all_rows.labels),
            "positives": int(all_rows.labels.sum()),
            "groups": len(np.unique(all_rows.groups)),
        },
        "embedding": {
            "model": embedder.name,
            "dim": int(vectors.shape[1]),
            "posts": len(posts),
            "encoded_now": fresh,
            "seconds": round(embed_seconds, 1),
        },
        "config": asdict(config),
        "columns": all_rows.columns,
        "scorer": scorer.params(),
        "topic_vocab": table.topic_vocab,
        "profile_encoder": asdict(encoder),
        "metrics": metrics,
        "feature_importance": importances,
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    digest = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:8]
    meta["version"] = f"test-{t0:%Y%m%d}-{digest}"
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta
