"""Training the control arm, point-in-time by construction.

The model sees `history.until(t0)`: a copy holding only events before T0, so nothing later can
leak in. Training rows come from several cutoffs c < T0 (every `step` back from T0 - W): for
each, the users with a like in [c, c+W) and an event before c, their candidates at c (posts
they had not seen), features from history before c, label = liked in [c, c+W). The latest
cutoffs are held out to pick the number of trees and report validation metrics; the final
model is then refit on every cutoff. The score is a popularity prior plus a CatBoost correction
(see `models.control.model.Scorer`).
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
from models.control.model import PRIOR_EPS, DailyCoVisitation, Scorer, scoring_request
from models.features import FeatureBuilder, PostTable, ProfileEncoder, TextSVD
from models.history import History

FORMAT_VERSION = 1


@dataclass
class TrainConfig:
    window_days: float = 7
    step_days: float = 1
    max_cutoffs: int = 80
    min_history_days: float = 21
    iterations: int = 300
    min_iterations: int = 10  # also the step of the tree-count search
    valid_cutoffs: int = 7  # the last week of cutoffs picks the number of trees
    depth: int = 4
    learning_rate: float = 0.03
    text_dim: int = 32
    neighbours: int = 50
    seed: int = 0
    threads: int = 2
    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    prior_windows: tuple[str, ...] = ("1d", "3d", "7d", "14d", "30d")
    # Columns CatBoost corrects the prior with. Chosen on MovieLens: all-time counts and
    # co-visitation scores drift with history length and hurt out of time, so they stay
    # candidate sources / diagnostics rather than ranker inputs.
    ranker_columns: tuple[str, ...] = (
        "user_views",
        "user_likes",
        "user_like_rate",
        "user_events_7d",
        "user_days_active",
        "user_days_since_last",
        "user_text_sim",
    )


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


def _classifier(config: TrainConfig, iterations: int):
    from catboost import CatBoostClassifier

    return CatBoostClassifier(
        iterations=iterations,
        depth=config.depth,
        learning_rate=config.learning_rate,
        random_seed=config.seed,
        thread_count=config.threads,
        verbose=False,
        allow_writing_files=False,
    )


def _pool(rows: Rows, scorer: Scorer):
    from catboost import Pool

    return Pool(
        scorer.ranker_matrix(rows.matrix),
        rows.labels.astype(np.int8),
        baseline=scorer.prior(rows.matrix),
    )


def fit_prior(rows: Rows, config: TrainConfig) -> Scorer:
    """The popularity prior: the recent window whose like share ranks pre-T0 candidates best,
    scaled by a one-feature logistic regression."""
    from sklearn.linear_model import LogisticRegression

    names = [f"post_like_share_{w}" for w in config.prior_windows]
    best = max(names, key=lambda c: group_hit_rate(rows.matrix[:, rows.columns.index(c)], rows))
    x = np.log(rows.matrix[:, [rows.columns.index(best)]].astype(np.float64) + PRIOR_EPS)
    fit = LogisticRegression().fit(x, rows.labels)
    return Scorer(
        columns=rows.columns,
        ranker_columns=list(config.ranker_columns),
        prior_column=best,
        prior_coef=float(fit.coef_[0, 0]),
        prior_intercept=float(fit.intercept_[0]),
    )


def best_tree_count(model, scorer: Scorer, valid: Rows, config: TrainConfig) -> int:
    """Number of trees (a multiple of `min_iterations`) whose prior + correction ranks the
    held-out cutoffs best by HitRate@5 among candidates; ties go to fewer trees. Log-loss
    keeps falling on user-level calibration long after the ranking stops improving."""
    prior = scorer.prior(valid.matrix)
    staged = model.staged_predict(
        scorer.ranker_matrix(valid.matrix),
        prediction_type="RawFormulaVal",
        eval_period=config.min_iterations,
    )
    best, best_hr = config.min_iterations, -1.0
    for i, raw in enumerate(staged):
        trees = min((i + 1) * config.min_iterations, model.tree_count_)
        hr = group_hit_rate(prior + raw, valid)
        if hr > best_hr + 1e-12:
            best, best_hr = trees, hr
    return best


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
    n_valid = max(1, min(config.valid_cutoffs, len(per_cutoff) // 4))
    fit_rows, valid_rows = _concat(per_cutoff[:-n_valid]), _concat(per_cutoff[-n_valid:])

    all_rows = _concat(per_cutoff)
    scorer = fit_prior(fit_rows, config)
    with tqdm(total=2, desc="control: CatBoost", disable=not progress) as bar:
        probe = _classifier(config, config.iterations)
        probe.fit(_pool(fit_rows, scorer))
        best = best_tree_count(probe, scorer, valid_rows, config)
        scorer.ranker = probe.copy()
        scorer.ranker.shrink(best)
        metrics = {
            "valid_cutoffs": n_valid,
            "valid_groups": len(np.unique(valid_rows.groups)),
            "valid_hit_rate_at_5_candidates": group_hit_rate(
                scorer.score(valid_rows.matrix), valid_rows
            ),
            "valid_hit_rate_at_5_candidates_prior": group_hit_rate(
                scorer.prior(valid_rows.matrix), valid_rows
            ),
            "valid_hit_rate_at_5_candidates_popular": group_hit_rate(
                valid_rows.matrix[:, all_rows.columns.index("post_like_share_30d")], valid_rows
            ),
            "best_iteration": best,
        }
        bar.update()
        scorer = fit_prior(all_rows, config)
        final = _classifier(config, best)
        final.fit(_pool(all_rows, scorer))
        scorer.ranker = final
        bar.update()

    importances = dict(
        zip(scorer.ranker_columns, final.get_feature_importance().round(3).tolist(), strict=True)
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
        "scorer": scorer.params(),
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
