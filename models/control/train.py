"""Training the control arm, point-in-time by construction.

The model sees `history.until(t0)`: a copy holding only events before T0, so nothing later can
leak in. Training rows come from several cutoffs c < T0 (every `step` back from T0 - W): for
each, the users with a like in [c, c+W) and an event before c, their candidates at c (posts
they had not seen), features from history before c, label = liked in [c, c+W). The latest
cutoff is held out to pick the number of trees and report validation metrics; the final model
is then refit on every cutoff.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from models.candidates import CandidateConfig, CoVisitation
from models.catalog import PostCatalog, UserProfiles
from models.control.model import DailyCoVisitation, scoring_request
from models.features import FeatureBuilder, PostTable, ProfileEncoder, TextSVD
from models.history import History

FORMAT_VERSION = 1


@dataclass
class TrainConfig:
    window_days: float = 7
    step_days: float = 3.5
    max_cutoffs: int = 16
    min_history_days: float = 14
    iterations: int = 800
    depth: int = 6
    learning_rate: float = 0.05
    loss: str = "YetiRank"
    text_dim: int = 32
    neighbours: int = 50
    seed: int = 0
    threads: int = 2
    candidates: CandidateConfig = field(default_factory=CandidateConfig)


@dataclass
class Rows:
    matrix: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    columns: list[str]


def cutoffs(history: History, t0: datetime, config: TrainConfig) -> list[datetime]:
    """Training cutoffs, oldest first; each label window [c, c+W) ends by T0."""
    span = history.time_range()
    if span is None:
        raise ValueError("t0: no events before T0 to train on")
    window, step = timedelta(days=config.window_days), timedelta(days=config.step_days)
    first_allowed = span[0] + timedelta(days=config.min_history_days)
    found, c = [], t0 - window
    while c >= first_allowed and len(found) < config.max_cutoffs:
        found.append(c)
        c -= step
    if len(found) < 2:
        raise ValueError(
            f"t0: need at least two training cutoffs between {first_allowed} and {t0 - window}"
        )
    return found[::-1]


def rows_at(
    history: History,
    builder: FeatureBuilder,
    covisit: CoVisitation,
    cutoff: datetime,
    config: TrainConfig,
    group_offset: int,
) -> Rows | None:
    """Labelled candidate rows of one cutoff (users without a liked candidate are skipped)."""
    labels = history.likes_by_user(cutoff, cutoff + timedelta(days=config.window_days))
    ids = builder.posts.catalog.post_ids
    parts, ys, groups, columns = [], [], [], []
    for user_id in sorted(labels):
        req = scoring_request(builder, covisit, config.candidates, user_id, cutoff, True)
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


def _concat(rows: list[Rows]) -> Rows:
    return Rows(
        np.vstack([r.matrix for r in rows]),
        np.concatenate([r.labels for r in rows]),
        np.concatenate([r.groups for r in rows]),
        rows[0].columns,
    )


def _ranker(config: TrainConfig, iterations: int):
    from catboost import CatBoostRanker

    return CatBoostRanker(
        loss_function=config.loss,
        iterations=iterations,
        depth=config.depth,
        learning_rate=config.learning_rate,
        random_seed=config.seed,
        thread_count=config.threads,
        verbose=False,
        allow_writing_files=False,
    )


def _pool(rows: Rows):
    from catboost import Pool

    return Pool(rows.matrix, rows.labels.astype(np.float32), group_id=rows.groups)


def group_hit_rate(scores: np.ndarray, rows: Rows, k: int = 5) -> float:
    """Share of groups whose top-k by `scores` holds a positive (HitRate@k among candidates)."""
    hits = []
    for g in np.unique(rows.groups):
        mask = rows.groups == g
        top = np.argsort(-scores[mask], kind="stable")[:k]
        hits.append(rows.labels[mask][top].any())
    return float(np.mean(hits))


def train(
    history: History,
    posts: PostCatalog,
    users: UserProfiles | None,
    t0: datetime,
    out: Path,
    config: TrainConfig | None = None,
    progress: bool = True,
) -> dict:
    """Train on events before `t0`, write the artifact folder `out`, return its meta."""
    from tqdm import tqdm

    config = config or TrainConfig()
    started = time.perf_counter()
    past = history.until(t0)
    span = past.time_range()
    if span is None:
        raise ValueError(f"t0: no events before {t0}")
    users = users or UserProfiles.empty()
    text_model = TextSVD(config.text_dim, config.seed).fit(posts.texts)
    table = PostTable.build(posts, text_model)
    encoder = ProfileEncoder.fit(users)
    builder = FeatureBuilder(past, table, users, encoder)
    points = cutoffs(past, t0, config)

    per_cutoff: list[Rows] = []
    offset = 0
    daily = DailyCoVisitation(past, posts.post_ids, config.neighbours)
    for c in tqdm(points, desc="control: training rows", disable=not progress):
        covisit = daily.at(c)
        rows = rows_at(past, builder, covisit, c, config, offset)
        if rows is not None:
            per_cutoff.append(rows)
            offset = int(rows.groups.max()) + 1
    if len(per_cutoff) < 2:
        raise ValueError("t0: too few labelled training rows before T0 (need two cutoffs)")
    fit_rows, valid_rows = _concat(per_cutoff[:-1]), per_cutoff[-1]

    with tqdm(total=2, desc="control: CatBoost", disable=not progress) as bar:
        ranker = _ranker(config, config.iterations)
        ranker.fit(_pool(fit_rows), eval_set=_pool(valid_rows), use_best_model=True)
        best = max(50, ranker.get_best_iteration() + 1)
        valid_scores = ranker.predict(valid_rows.matrix)
        pop_col = fit_rows.columns.index("post_likes_30d")
        metrics = {
            "valid_cutoff": points[-1].isoformat(),
            "valid_groups": len(np.unique(valid_rows.groups)),
            "valid_hit_rate_at_5_candidates": group_hit_rate(valid_scores, valid_rows),
            "valid_hit_rate_at_5_candidates_popular_30d": group_hit_rate(
                valid_rows.matrix[:, pop_col], valid_rows
            ),
            "best_iteration": best,
        }
        bar.update()
        final = _ranker(config, best)
        final.fit(_pool(_concat(per_cutoff)))
        bar.update()

    all_rows = _concat(per_cutoff)
    importances = dict(
        zip(
            all_rows.columns,
            final.get_feature_importance(type="PredictionValuesChange").round(3).tolist(),
            strict=True,
        )
    )
    out.mkdir(parents=True, exist_ok=True)
    final.save_model(str(out / "model.cbm"))
    text_model.save(out / "text_svd.pkl")
    users.save(out / "users.pkl")
    np.savez(
        out / "posts.npz",
        post_ids=posts.post_ids,
        topics=np.array([t or "" for t in posts.topics], dtype=str),
        text_vectors=table.text_vectors,
    )
    meta = {
        "model": "control",
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
        "config": asdict(config),
        "columns": all_rows.columns,
        "topic_vocab": table.topic_vocab,
        "profile_encoder": asdict(encoder),
        "metrics": metrics,
        "feature_importance": importances,
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    digest = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:8]
    meta["version"] = f"control-{t0:%Y%m%d}-{digest}"
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta
