"""Training pieces both arms share: point-in-time cutoffs, labelled candidate rows, the
HitRate@k used to pick priors and tree counts, and the artifact's meta.json.

Each arm keeps its own candidates and ranker; what is here must stay arm-neutral (an arm never
imports the other arm).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from feedlab.models.candidates import CoVisitation, DailyCoVisitation
from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.features import (
    FeatureBlock,
    FeatureBuilder,
    PostTable,
    ProfileEncoder,
    Request,
    TextSVD,
)
from feedlab.models.history import History
from feedlab.models.scoring import PriorColumns


class CutoffConfig(Protocol):
    window_days: float
    step_days: float
    max_cutoffs: int
    min_history_days: float


class RowsConfig(Protocol):
    window_days: float
    text_dim: int
    seed: int
    neighbours: int


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


def history_before(history: History, t0: datetime) -> tuple[History, tuple[datetime, datetime]]:
    """The events before `t0` (all that training may see) and their time span."""
    past = history.until(t0)
    span = past.time_range()
    if span is None:
        raise ValueError(f"t0: no events before {t0}")
    return past, span


def cutoffs(history: History, t0: datetime, config: CutoffConfig) -> list[datetime]:
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


def labelled_rows(
    history: History,
    builder: FeatureBuilder,
    request: Callable[[int, datetime], Request],
    cutoff: datetime,
    window_days: float,
    group_offset: int,
) -> Rows | None:
    """Labelled candidate rows of one cutoff: `request(user_id, cutoff)` gives a user's
    candidates (seen posts excluded); label = liked in [cutoff, cutoff + window). Users without
    a liked candidate are skipped."""
    labels = history.likes_by_user(cutoff, cutoff + timedelta(days=window_days))
    ids = builder.posts.catalog.post_ids
    parts, ys, groups, columns = [], [], [], []
    for user_id in sorted(labels):
        req = request(user_id, cutoff)
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


def rows_per_cutoff(
    history: History,
    builder: FeatureBuilder,
    points: list[datetime],
    window_days: float,
    request_at: Callable[[datetime], Callable[[int, datetime], Request]],
    desc: str,
    progress: bool = True,
) -> list[Rows]:
    """`labelled_rows` of every cutoff that has any (group ids unique across cutoffs);
    `request_at(cutoff)` is the arm's candidate request as of that cutoff."""
    from tqdm import tqdm

    per_cutoff: list[Rows] = []
    offset = 0
    for c in tqdm(points, desc=desc, disable=not progress):
        rows = labelled_rows(history, builder, request_at(c), c, window_days, offset)
        if rows is not None:
            per_cutoff.append(rows)
            offset = int(rows.groups.max()) + 1
    if len(per_cutoff) < 2:
        raise ValueError("t0: too few labelled training rows before T0 (need two cutoffs)")
    return per_cutoff


@dataclass
class CandidateRows:
    """An arm's labelled candidate rows per cutoff and the text pieces fitted to build them."""

    per_cutoff: list[Rows]
    text_model: TextSVD
    table: PostTable
    encoder: ProfileEncoder


def candidate_rows(
    history: History,
    posts: PostCatalog,
    users: UserProfiles,
    points: list[datetime],
    config: RowsConfig,
    request: Callable[[FeatureBuilder, CoVisitation], Callable[[int, datetime], Request]],
    desc: str,
    progress: bool = True,
    extra_blocks: Sequence[FeatureBlock] = (),
) -> CandidateRows:
    """`rows_per_cutoff` over the shared features (plus an arm's `extra_blocks`), with the
    co-visitation of each cutoff's day; `request(builder, covisit)` is the arm's candidate
    request (seen posts excluded)."""
    text_model = TextSVD(config.text_dim, config.seed).fit(posts.texts)
    table = PostTable.build(posts, text_model)
    encoder = ProfileEncoder.fit(users)
    builder = FeatureBuilder(history, table, users, encoder, extra_blocks=extra_blocks)
    daily = DailyCoVisitation(history, posts.post_ids, config.neighbours)
    per_cutoff = rows_per_cutoff(
        history,
        builder,
        points,
        config.window_days,
        lambda c: request(builder, daily.at(c)),
        desc,
        progress,
    )
    return CandidateRows(per_cutoff, text_model, table, encoder)


def group_hit_rate(scores: np.ndarray, rows: Rows, k: int = 5) -> float:
    """Share of groups whose top-k by `scores` holds a positive (HitRate@k among candidates);
    ties keep row order. One sort over all rows: training calls this once per tree count."""
    order = np.lexsort((-np.asarray(scores, dtype=np.float64), rows.groups))
    groups = rows.groups[order]
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    top_hits = np.asarray(rows.labels[order], dtype=bool) & (rank < k)
    return float(np.logical_or.reduceat(top_hits, starts).mean())


def hit_rate_by_trees(
    ranker, prior: np.ndarray, matrix: np.ndarray, rows: Rows, step: int
) -> dict[int, float]:
    """`group_hit_rate` of `prior` plus the raw scores of the ranker's first n trees on `rows`
    (`matrix`: its ranker columns), for n = 0 (the prior alone), step, 2 step, ... and the full
    count. One staged pass: each step adds only its own trees."""
    rates = {0: group_hit_rate(prior, rows)}
    staged = ranker.staged_predict(matrix, prediction_type="RawFormulaVal", eval_period=step)
    for i, raw in enumerate(staged):
        rates[min((i + 1) * step, ranker.tree_count_)] = group_hit_rate(prior + raw, rows)
    return rates


class TreeProgress:
    """CatBoost callback that moves a progress bar one tree at a time: a fit over a million
    rows takes minutes, and a bar that only moves when the fit ends looks hung."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def after_iteration(self, info: object) -> bool:
        self.bar.update()
        return True  # keep training


def tree_bar(desc: str, trees: int, progress: bool) -> Any:
    """The bar a training's CatBoost fits advance (`trees`: the first fit's; the final refit
    adds its own with `bar.total += n`)."""
    from tqdm import tqdm

    return tqdm(total=trees, desc=desc, unit=" trees", disable=not progress)


def fewest_best_trees(rates: dict[int, float], least: int = 0) -> int:
    """The tree count (at least `least`) with the best hit rate; ties go to fewer trees."""
    return max((n for n in rates if n >= least), key=lambda n: (rates[n], -n))


def training_data(
    past: History,
    span: tuple[datetime, datetime],
    points: list[datetime],
    window_days: float,
    rows: Rows,
) -> dict:
    """The meta.json `training_data` block: what the model saw, for audits of T0."""
    return {
        "first_event": span[0].isoformat(),
        "last_event": span[1].isoformat(),
        "events": len(past),
        "cutoffs": [c.isoformat() for c in points],
        "label_windows_end": (points[-1] + timedelta(days=window_days)).isoformat(),
        "rows": len(rows.labels),
        "positives": int(rows.labels.sum()),
        "groups": len(np.unique(rows.groups)),
    }


def scorer_meta(
    config: Any, rows: Rows, scorer: PriorColumns, table: PostTable, encoder: ProfileEncoder
) -> dict:
    """The meta keys an arm's `load` rebuilds its features and scorer from (`config`: the
    arm's TrainConfig dataclass)."""
    return {
        "config": asdict(config),
        "columns": rows.columns,
        "scorer": scorer.params(),
        "topic_vocab": table.topic_vocab,
        "profile_encoder": asdict(encoder),
    }


def write_meta(out: Path, arm: str, t0: datetime, meta: dict) -> dict:
    """Version the meta by a digest of its content (so identical training gives one name) and
    write it as `out/meta.json`."""
    digest = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:8]
    meta["version"] = f"{arm}-{t0:%Y%m%d}-{digest}"
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta
