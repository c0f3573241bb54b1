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

import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np
from feedlab.models.artifact import save_shared
from feedlab.models.candidates import CandidateConfig, scoring_request
from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.control.model import Scorer
from feedlab.models.history import History
from feedlab.models.scoring import fit_log_prior
from feedlab.models.training import (
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
    """The popularity prior over `config.prior_windows` (see `models.scoring`)."""
    names = [f"post_like_share_{w}" for w in config.prior_windows]
    best, coef, intercept = fit_log_prior(
        rows.matrix, rows.labels, rows.columns, names, lambda score: group_hit_rate(score, rows)
    )
    return Scorer(
        columns=rows.columns,
        ranker_columns=list(config.ranker_columns),
        prior_column=best,
        prior_coef=coef,
        prior_intercept=intercept,
    )


def best_tree_count(model, scorer: Scorer, valid: Rows, config: TrainConfig) -> int:
    """Number of trees (a multiple of `min_iterations`) whose prior + correction ranks the
    held-out cutoffs best by HitRate@5 among candidates; ties go to fewer trees. Log-loss
    keeps falling on user-level calibration long after the ranking stops improving."""
    rates = hit_rate_by_trees(
        model,
        scorer.prior(valid.matrix),
        scorer.ranker_matrix(valid.matrix),
        valid,
        config.min_iterations,
    )
    return fewest_best_trees(rates, least=config.min_iterations)


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
    config = config or TrainConfig()
    started = time.perf_counter()
    past, span = history_before(history, t0)
    users = users or UserProfiles.empty()
    points = cutoffs(past, t0, config)
    labelled = candidate_rows(
        past,
        posts,
        users,
        points,
        config,
        lambda builder, covisit: partial(
            scoring_request, builder, covisit, config.candidates, exclude_seen=True
        ),
        "control: training rows",
        progress,
    )
    per_cutoff = labelled.per_cutoff
    n_valid = max(1, min(config.valid_cutoffs, len(per_cutoff) // 4))
    fit_rows, valid_rows = Rows.concat(per_cutoff[:-n_valid]), Rows.concat(per_cutoff[-n_valid:])

    all_rows = Rows.concat(per_cutoff)
    scorer = fit_prior(fit_rows, config)
    with tree_bar("control: CatBoost trees", config.iterations, progress) as bar:
        probe = _classifier(config, config.iterations)
        probe.fit(_pool(fit_rows, scorer), callbacks=[TreeProgress(bar)])
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
        bar.total += best
        scorer = fit_prior(all_rows, config)
        final = _classifier(config, best)
        final.fit(_pool(all_rows, scorer), callbacks=[TreeProgress(bar)])
        scorer.ranker = final

    importances = dict(
        zip(scorer.ranker_columns, final.get_feature_importance().round(3).tolist(), strict=True)
    )
    save_shared(out, final, labelled.text_model, users, posts, labelled.table)
    meta = {
        "model": "control",
        "format": FORMAT_VERSION,
        "trained_at": datetime.now().replace(microsecond=0).isoformat(),
        "t0": t0.isoformat(),
        "training_data": training_data(past, span, points, config.window_days, all_rows),
        **scorer_meta(config, all_rows, scorer, labelled.table, labelled.encoder),
        "metrics": metrics,
        "feature_importance": importances,
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    return write_meta(out, "control", t0, meta)
