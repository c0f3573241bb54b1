"""The one ranker both arms are: candidates → point-in-time features → popularity prior +
CatBoost correction (`models.scoring`).

`Ranker` is the estimator: its parameters are a `RankerConfig` and an arm's `Extension` (the
feature blocks and candidate sources the arm adds for a catalog); `fit` learns the text SVD, the
profile encoder, the prior and the correction from events before T0; `save` and `Ranker.load`
write and read the artifact folder; `recommender` serves the fitted ranker on a live History.
Training rows and requests go through the same `Pipeline`, so what the model was fitted on is
what it is served.

Training, point-in-time by construction: the ranker sees the events before T0 only. Rows come
from cutoffs c < T0 (every `step_days` back from T0 - W): for each, the users with a like in
[c, c+W) and an event before c, their candidates at c (posts they had not seen), features from
history before c, label = liked in [c, c+W). At most `max_rows` rows in all: past that budget,
a uniform sample of the (user, cutoff) groups, so training is bounded by the budget, not by the
number of events. The latest `valid_cutoffs` cutoffs are held out:
the prior is fitted on the others, the correction is fitted with `iterations` trees and the
held-out HitRate@5 among candidates picks the tree count (in steps of `tree_step`, zero trees =
the prior alone, ties to fewer trees; log-loss keeps falling on user-level calibration long
after the ranking stops improving). Then the prior is refitted on every cutoff and the
correction refitted there with the picked count.

Thin data: with fewer than `min_valid_groups` held-out groups (user × cutoff; 100 by default),
HitRate@5 differences between options are noise (at 100 groups a 95% interval is about ±0.09
wide), so nothing is chosen on them: training warns once (`ThinValidationWarning`, naming the
count and the fallback) and keeps the `popular` baseline's column (the 30-day like share) as the
prior, refitted on every cutoff, with no correction. `meta.json` records it under
`metrics.fallback` (null when the options were compared).
"""

from __future__ import annotations

import json
import pickle
import threading
import time
import warnings
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from feedlab.models.candidates import (
    CandidateConfig,
    CandidateSource,
    DailyCoVisitation,
    candidate_request,
    shared_sources,
)
from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.collaborative import COLLABORATIVE_NAMES, Collaborative, CollaborativeConfig
from feedlab.models.features import (
    DECAYED_NAMES,
    USER_NAMES,
    FeatureBlock,
    FeatureBuilder,
    PostTable,
    ProfileEncoder,
    Request,
    TextSVD,
)
from feedlab.models.history import History
from feedlab.models.refit import DailyRefit, refits_of
from feedlab.models.scoring import Prior, Scorer, share_columns
from feedlab.models.threads import one_blas_thread
from feedlab.models.training import (
    RowBuffer,
    TrainingRows,
    TreeProgress,
    cutoffs,
    fewest_best_trees,
    group_hit_rate,
    group_hits,
    hit_rate_by_trees,
    hits_by_trees,
    training_data,
    tree_bar,
    write_meta,
)

FORMAT_VERSION = 2
DEFAULT_MAX_ROWS = 4_000_000
COLLABORATIVE_RANKER_COLUMNS = (
    *USER_NAMES,
    *COLLABORATIVE_NAMES,
    *DECAYED_NAMES,
    *share_columns(("1d", "3d", "7d", "14d", "30d", "all")),
    "post_like_rate_30d",
    "post_like_rate_all",
)
"""An opt-in set of correction columns (`ranker_columns`): the user's activity, EASE and
co-visitation scores (raw, and z-scored and ranked within the user's candidates, as a per-user
ranking loss compares them), popularity over windows and half-lives from 1 to 30 days, and
like-rates. On MovieLens 100K, trained once at T0, it scored below `popular` (README)."""
POPULAR_COLUMN = "post_like_share_30d"  # the "popular" line of the validation metrics
GROUPWISE_LOSSES = frozenset(
    {"YetiRank", "YetiRankPairwise", "PairLogit", "PairLogitPairwise", "QueryRMSE", "QuerySoftMax"}
)


@dataclass
class RankerConfig:
    """The ranker's parameters, one behaviour for every arm; an arm sets `ranker_columns`.
    `loss` is CatBoost's `loss_function`: pointwise (Logloss) by default; a per-user ranking
    loss (YetiRank, PairLogit, ...: `GROUPWISE_LOSSES`) gets the rows' (user, cutoff) groups in
    its pool, so it learns the order within each user's candidates."""

    window_days: float = 7
    step_days: float = 1
    max_cutoffs: int = 80
    min_history_days: float = 21
    valid_cutoffs: int = 7  # the last week of cutoffs picks the number of trees
    # fewer held-out groups: no choice, the popular prior alone (MovieLens 100K holds out 151)
    min_valid_groups: int = 100
    # 0: one hold-out (the last `valid_cutoffs`) picks the tree count; n > 0: n rolling folds
    # compare the `selection_priors` and the correction with a paired CI (see `rolling_choice`)
    selection_folds: int = 0
    selection_priors: tuple[str, ...] = ("7d", "30d", "all", "decay3d")
    # labelled rows sampled over (user, cutoff) groups: training time and memory follow this
    # budget, not the number of events (MovieLens 100K and quality.py's demo world fit in it)
    max_rows: int = DEFAULT_MAX_ROWS
    iterations: int = 300
    tree_step: int = 10
    depth: int = 4
    learning_rate: float = 0.03
    loss: str = "Logloss"  # CatBoost's loss_function; a GROUPWISE_LOSSES one ranks per user
    text_dim: int = 32
    neighbours: int = 50
    seed: int = 0
    threads: int = 2
    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    collaborative: CollaborativeConfig = field(default_factory=CollaborativeConfig)
    prior_windows: tuple[str, ...] = ("1d", "3d", "7d", "14d", "30d")
    # Columns CatBoost corrects the prior with (an arm adds its own). Chosen on MovieLens:
    # all-time counts and collaborative scores drift with history length and hurt out of time
    # (COLLABORATIVE_RANKER_COLUMNS measured below popular there when trained once).
    ranker_columns: tuple[str, ...] = USER_NAMES

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RankerConfig:
        nested = ("candidates", "collaborative")
        config = cls(**{k: v for k, v in raw.items() if k not in nested})
        config.candidates = CandidateConfig(**raw.get("candidates", {}))
        config.collaborative = CollaborativeConfig(**raw.get("collaborative", {}))
        config.prior_windows = tuple(config.prior_windows)
        config.selection_priors = tuple(config.selection_priors)
        config.ranker_columns = tuple(config.ranker_columns)
        return config


@dataclass(frozen=True)
class TrainingSet:
    """What a ranker is fitted on: the events (only those before `t0` are read), the post
    catalog and the user profiles."""

    history: History
    posts: PostCatalog
    users: UserProfiles | None
    t0: datetime


class Extension(Protocol):
    """What an arm adds to the shared blocks and sources, for one catalog."""

    def parts(
        self, history: History, table: PostTable
    ) -> tuple[list[FeatureBlock], list[CandidateSource]]: ...


@dataclass(frozen=True)
class Pipeline:
    """Candidates and features for one catalog. Everything in it is indexed by catalog
    position, so it is replaced as a whole when posts arrive: a concurrent request sees the old
    catalog or the new one, never a mix."""

    builder: FeatureBuilder
    sources: tuple[CandidateSource, ...]

    @property
    def catalog(self) -> PostCatalog:
        return self.builder.posts.catalog

    def request(
        self, user_id: int, at: datetime, exclude_seen: bool, exclude: Collection[int] | None
    ) -> Request:
        return candidate_request(self.builder, self.sources, user_id, at, exclude_seen, exclude)

    def refits(self) -> list[DailyRefit]:
        """The per-day fits its sources and feature blocks keep (`models.refit`)."""
        return refits_of(*self.sources, *self.builder.blocks)


class Ranker:
    """The estimator. Fitted attributes end in `_`: `fit` or `load` sets them (the name and
    version come with `save` or `load`)."""

    def __init__(self, config: RankerConfig | None = None, extension: Extension | None = None):
        self.config = config or RankerConfig()
        self.extension = extension

    # fitting ----------------------------------------------------------------------------

    def fit(self, data: TrainingSet, progress: bool = True, label: str = "ranker") -> Ranker:
        """Fit on the events before `data.t0` only (`label` names the progress bars)."""
        config, t0 = self.config, data.t0
        started = time.perf_counter()
        past = events_before(data.history, t0)
        span = past.time_range()
        if span is None:
            raise ValueError(f"t0: no events before {t0}")
        self.fit_tables(data.posts, data.users)
        points = cutoffs(past, t0, config)
        pipeline = self.pipeline(past, data.posts, self.users_)
        shares = share_columns(config.prior_windows)
        candidates = share_columns(config.selection_priors) if config.selection_folds else []
        wanted = list(dict.fromkeys([*shares, *candidates, POPULAR_COLUMN, *config.ranker_columns]))
        with one_blas_thread():  # thousands of small products: threads only add wake-ups
            per_cutoff = rows_per_cutoff(
                pipeline,
                points,
                wanted,
                config.window_days,
                config.max_rows,
                config.seed,
                progress,
                label,
            )
        rows = TrainingRows.concat(per_cutoff)
        columns = list(config.ranker_columns)
        with tree_bar(f"{label}: CatBoost trees", 0, progress) as bar:
            if config.selection_folds:
                choice = rolling_choice(per_cutoff, columns, config, bar)
            else:
                choice = holdout_choice(per_cutoff, shares, columns, config, bar)
            prior = fit_prior(rows, choice.priors)
            bar.total += choice.trees
            booster = None
            if choice.trees:
                booster = fit_correction(rows, prior, columns, choice.trees, config, bar)
        fallback = choice.metrics["fallback"]
        if fallback is not None:  # after the progress bars, so it stands on its own line
            warnings.warn(f"{label}: {fallback['message']}", ThinValidationWarning, stacklevel=2)
        self.scorer_ = Scorer(prior, config.ranker_columns, booster)
        self.report_ = {
            "t0": t0.isoformat(),
            "training_data": training_data(past, span, points, config.window_days, rows),
            "metrics": choice.metrics,
            "feature_importance": self._importances(),
            "train_seconds": round(time.perf_counter() - started, 1),
        }
        return self

    def refit(self, data: TrainingSet) -> Ranker:
        """A ranker with this one's settings and arm extension fitted on `data` (events before
        `data.t0`), named after this one: what a scheduled retraining would serve from
        `data.t0` on."""
        fresh = Ranker(self.config, self.extension).fit(data, progress=False, label=self.name_)
        fresh.name_, fresh.version_ = self.name_, f"{self.version_}@{data.t0:%Y-%m-%dT%H:%M}"
        return fresh

    def fit_tables(self, posts: PostCatalog, users: UserProfiles | None) -> Ranker:
        """The label-free part of `fit`: the text SVD, the topic vocabulary and the profile
        encoder, which `pipeline` needs."""
        self.posts_, self.users_ = posts, users or UserProfiles.empty()
        self.text_model_ = TextSVD(self.config.text_dim, self.config.seed).fit(posts.texts)
        self.topic_vocab_ = sorted({t for t in posts.topics if t})
        self.encoder_ = ProfileEncoder.fit(self.users_)
        return self

    def _importances(self) -> dict[str, float]:
        booster = self.scorer_.booster
        if booster is None:
            return {}
        values = booster.get_feature_importance(type="PredictionValuesChange").round(4)
        return dict(zip(self.scorer_.ranker_columns, values.tolist(), strict=True))

    # serving ----------------------------------------------------------------------------

    def pipeline(self, history: History, posts: PostCatalog, users: UserProfiles) -> Pipeline:
        """Candidates and features for `posts` on `history` (fitted text model and encoder)."""
        config = self.config
        table = PostTable.build(posts, self.text_model_, self.topic_vocab_)
        blocks, sources = self.extension.parts(history, table) if self.extension else ([], [])
        covisit = DailyCoVisitation(history, posts.post_ids, config.neighbours)
        collaborative = Collaborative.build(history, posts.post_ids, covisit, config.collaborative)
        builder = FeatureBuilder(
            history, table, users, self.encoder_, extra_blocks=[collaborative, *blocks]
        )
        shared = shared_sources(config.candidates, covisit)
        return Pipeline(builder, (*shared, collaborative.source, *sources))

    def recommender(
        self,
        history: History,
        posts: PostCatalog | None = None,
        users: UserProfiles | None = None,
    ) -> RankedRecommender:
        """The fitted ranker serving on `history`; `posts` (the live catalog, default: the
        training one) may hold posts training never saw; `users` default to training's."""
        pipeline = self.pipeline(history, posts or self.posts_, users or self.users_)
        pipeline.builder.check(self.scorer_.columns)
        return RankedRecommender(self.name_, self.version_, self, pipeline)

    # saving -----------------------------------------------------------------------------

    def save(self, out: Path, name: str, extra: dict[str, Any]) -> dict[str, Any]:
        """Write the artifact folder `out` (created if missing); `extra`: the arm's own meta
        keys. Returns the meta, versioned by a digest of its content."""
        out.mkdir(parents=True, exist_ok=True)
        scorer = self.scorer_
        (out / "model.cbm").unlink(missing_ok=True)
        if scorer.booster is not None:
            scorer.booster.save_model(str(out / "model.cbm"))
        (out / "text_svd.pkl").write_bytes(pickle.dumps(self.text_model_))
        self.users_.save(out / "users.pkl")
        posts = self.posts_
        catalog = {
            "post_ids": posts.post_ids.tolist(),
            "texts": posts.texts,
            "topics": posts.topics,
        }
        (out / "posts.json").write_text(json.dumps(catalog))
        meta = {
            "model": name,
            "format": FORMAT_VERSION,
            "trained_at": datetime.now().replace(microsecond=0).isoformat(),
            **self.report_,
            "config": asdict(self.config),
            "scorer": {
                "prior": asdict(scorer.prior),
                "ranker_columns": list(scorer.ranker_columns),
                "trees": scorer.trees,
            },
            "topic_vocab": self.topic_vocab_,
            "profile_encoder": asdict(self.encoder_),
            **extra,
        }
        meta = write_meta(out, name, datetime.fromisoformat(str(self.report_["t0"])), meta)
        self.name_, self.version_ = name, meta["version"]
        return meta

    @classmethod
    def load(cls, path: Path, name: str, extension: Extension | None = None) -> Ranker:
        """The fitted ranker of the artifact folder `path` (trained as arm `name`)."""
        meta = read_meta(path, name)
        ranker = cls(RankerConfig.from_dict(meta["config"]), extension)
        raw = meta["scorer"]
        booster = None
        if raw["trees"]:
            from catboost import CatBoost

            booster = CatBoost()
            booster.load_model(str(path / "model.cbm"))
        ranker.scorer_ = Scorer(Prior(**raw["prior"]), tuple(raw["ranker_columns"]), booster)
        ranker.text_model_ = pickle.loads((path / "text_svd.pkl").read_bytes())
        ranker.users_ = UserProfiles.load(path / "users.pkl")
        saved = json.loads((path / "posts.json").read_text())
        ranker.posts_ = PostCatalog.from_records(saved["post_ids"], saved["texts"], saved["topics"])
        ranker.topic_vocab_ = meta["topic_vocab"]
        ranker.encoder_ = ProfileEncoder(**meta["profile_encoder"])
        ranker.report_ = {k: meta[k] for k in ("t0", "training_data", "metrics")}
        ranker.name_, ranker.version_ = name, meta["version"]
        return ranker


@dataclass(frozen=True)
class Choice:
    """What validation chose: the columns the final prior is fitted among, the tree count of
    the correction (0: none) and the `metrics` block of meta.json."""

    priors: list[str]
    trees: int
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Fold:
    """A rolling validation fold: `valid` holds the rows of consecutive cutoffs, `fit` those of
    the cutoffs whose label windows close by the first of them."""

    fit: TrainingRows
    valid: TrainingRows
    cutoffs: list[datetime]


def valid_metrics(
    valid: TrainingRows | None,
    cutoffs_held_out: Sequence[datetime],
    chosen: float,
    prior: float,
    trees: int,
    fallback: dict[str, Any] | None,
) -> dict[str, Any]:
    """The `metrics` block of meta.json (HitRates among candidates on the held-out groups)."""
    popular = float("nan")
    if valid is not None:
        popular = group_hit_rate(valid.take([POPULAR_COLUMN])[:, 0], valid)
    return {
        "valid_cutoffs": [c.isoformat() for c in cutoffs_held_out],
        "valid_groups": 0 if valid is None else len(np.unique(valid.groups)),
        "valid_hit_rate_at_5_candidates": chosen,
        "valid_hit_rate_at_5_candidates_prior": prior,
        "valid_hit_rate_at_5_candidates_popular": popular,
        "trees": trees,
        "fallback": fallback,
    }


def fallback_choice(
    valid: TrainingRows | None, cutoffs_held_out: Sequence[datetime], min_groups: int
) -> Choice | None:
    """The popular prior alone when `valid` is too thin to choose on (`thin_data_fallback`)."""
    groups = 0 if valid is None else len(np.unique(valid.groups))
    fallback = thin_data_fallback(groups, min_groups)
    if fallback is None:
        return None
    rate = float("nan")
    if valid is not None:
        rate = group_hit_rate(valid.take([POPULAR_COLUMN])[:, 0], valid)
    return Choice(
        [POPULAR_COLUMN], 0, valid_metrics(valid, cutoffs_held_out, rate, rate, 0, fallback)
    )


def holdout_choice(
    per_cutoff: list[TrainingRows],
    shares: list[str],
    columns: list[str],
    config: RankerConfig,
    bar: Any,
) -> Choice:
    """One hold-out: the prior (best share column on the other cutoffs) and a correction
    with `config.iterations` trees are fitted on all but the last `valid_cutoffs` cutoffs;
    their HitRate@5 picks the tree count (ties to fewer, 0: the prior alone)."""
    n_valid = max(1, min(config.valid_cutoffs, len(per_cutoff) // 4))
    fit_rows = TrainingRows.concat(per_cutoff[:-n_valid])
    valid = TrainingRows.concat(per_cutoff[-n_valid:])
    held_out = [r.cutoff for r in per_cutoff[-n_valid:] if r.cutoff is not None]
    thin = fallback_choice(valid, held_out, config.min_valid_groups)
    if thin is not None:
        return thin
    prior = fit_prior(fit_rows, shares)
    bar.total += config.iterations
    probe = fit_correction(fit_rows, prior, columns, config.iterations, config, bar)
    base = prior(valid.take([prior.column])[:, 0])
    rates = hit_rate_by_trees(probe, base, valid.take(columns), valid, config.tree_step)
    trees = fewest_best_trees(rates)
    return Choice(
        shares, trees, valid_metrics(valid, held_out, rates[trees], rates[0], trees, None)
    )


def rolling_folds(
    per_cutoff: list[TrainingRows], n_valid: int, folds: int, window_days: float
) -> list[Fold]:
    """Up to `folds` folds, oldest first: fold f (from the end) holds out the f-th block of
    `n_valid` cutoffs and fits on the cutoffs whose label windows close by the block's first
    cutoff, so no fold learns from a like it is scored on. Folds with nothing to fit on are
    left out."""
    window = timedelta(days=window_days)
    out: list[Fold] = []
    for f in range(folds):
        end = len(per_cutoff) - f * n_valid
        block = per_cutoff[max(0, end - n_valid) : end]
        times = [r.cutoff for r in block if r.cutoff is not None]
        if not times:
            break
        fit = [r for r in per_cutoff if r.cutoff is not None and r.cutoff + window <= times[0]]
        if not fit:
            break
        out.append(Fold(TrainingRows.concat(fit), TrainingRows.concat(block), times))
    return out[::-1]


def rolling_choice(
    per_cutoff: list[TrainingRows], columns: list[str], config: RankerConfig, bar: Any
) -> Choice:
    """Rolling validation before T0 (`rolling_folds`, `selection_folds` of them): each
    candidate prior column (`selection_priors`) is scored on every fold's held-out groups; the
    best pooled HitRate@5 is the prior (ties to the first listed). The correction is fitted on
    each fold's fit rows on top of that prior, its tree count picked by the pooled HitRate@5,
    and it is kept only when the paired 95% CI (bootstrap over users) of its per-group hits
    minus the best prior's lies above zero; else the prior alone."""
    from feedlab.analysis.offline.evaluate import bootstrap_ci

    n_valid = max(1, min(config.valid_cutoffs, len(per_cutoff) // 4))
    folds = rolling_folds(per_cutoff, n_valid, config.selection_folds, config.window_days)
    valid = TrainingRows.concat([f.valid for f in folds]) if folds else None
    held_out = [c for f in folds for c in f.cutoffs]
    thin = fallback_choice(valid, held_out, config.min_valid_groups)
    if thin is not None:
        return thin
    if valid is None:
        raise ValueError("t0: too little history before T0 for a rolling validation fold")
    priors = share_columns(config.selection_priors)
    prior_hits = {c: group_hits(valid.take([c])[:, 0], valid) for c in priors}
    best = max(priors, key=lambda c: float(prior_hits[c].mean()))
    by_trees: dict[int, list[np.ndarray]] = {}
    for fold in folds:
        prior = fit_prior(fold.fit, [best])
        bar.total += config.iterations
        probe = fit_correction(fold.fit, prior, columns, config.iterations, config, bar)
        base = prior(fold.valid.take([best])[:, 0])
        hits = hits_by_trees(probe, base, fold.valid.take(columns), fold.valid, config.tree_step)
        for n, h in hits.items():
            by_trees.setdefault(n, []).append(h)
    pooled = {n: np.concatenate(h) for n, h in by_trees.items() if n and len(h) == len(folds)}
    rates = {n: float(h.mean()) for n, h in pooled.items()}
    trees = fewest_best_trees(rates)
    diff = pooled[trees].astype(np.float64) - prior_hits[best]
    lo, hi = bootstrap_ci(diff, valid.group_users(), seed=config.seed)
    kept = lo > 0
    best_rate = float(prior_hits[best].mean())
    metrics = valid_metrics(
        valid, held_out, rates[trees] if kept else best_rate, best_rate, trees if kept else 0, None
    )
    metrics["selection"] = {
        "rule": "best pooled HitRate@5 among the priors; the correction only when the paired "
        "95% CI of its difference to that prior (bootstrap over users) is above zero",
        "folds": [
            {
                "valid_cutoffs": [f.cutoffs[0].isoformat(), f.cutoffs[-1].isoformat()],
                "valid_groups": len(np.unique(f.valid.groups)),
                "fit_groups": len(np.unique(f.fit.groups)),
            }
            for f in folds
        ],
        "priors": {c: float(h.mean()) for c, h in prior_hits.items()},
        "best_prior": best,
        "correction": {
            "trees": trees,
            "hit_rate": rates[trees],
            "difference": float(diff.mean()),
            "ci95": [lo, hi],
            "kept": kept,
        },
    }
    return Choice([best], trees if kept else 0, metrics)


class ThinValidationWarning(UserWarning):
    """Training had too few held-out groups to choose between the prior and its correction."""


def thin_data_fallback(valid_groups: int, min_groups: int) -> dict[str, Any] | None:
    """The fallback record when `valid_groups` held-out groups are too few (< `min_groups`) to
    tell options apart, else None."""
    if valid_groups >= min_groups:
        return None
    return {
        "valid_groups": valid_groups,
        "min_valid_groups": min_groups,
        "prior": POPULAR_COLUMN,
        "trees": 0,
        "message": (
            f"only {valid_groups} validation groups (user x cutoff) before T0, fewer than "
            f"{min_groups}: too few to tell the popularity priors and the CatBoost correction "
            f"apart; falling back to the popular prior ({POPULAR_COLUMN}, the 30-day like "
            "share) with no correction"
        ),
    }


def fit_prior(rows: TrainingRows, shares: list[str]) -> Prior:
    """The prior over the like-share columns `shares`, picked by HitRate@5 on `rows`."""
    return Prior.fit(
        {c: rows.take([c])[:, 0] for c in shares},
        rows.labels,
        lambda score: group_hit_rate(score, rows),
    )


def fit_correction(
    rows: TrainingRows,
    prior: Prior,
    columns: list[str],
    iterations: int,
    config: RankerConfig,
    bar: Any = None,
) -> Any:
    """CatBoost with `iterations` trees fitted to correct `prior` on `rows` from `columns`
    (`bar`: a progress bar moved per tree)."""
    from catboost import CatBoost, Pool

    booster = CatBoost(
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
    pool = Pool(
        rows.take(columns),
        rows.labels.astype(np.float32),
        group_id=rows.groups if config.loss.split(":")[0] in GROUPWISE_LOSSES else None,
        baseline=prior(rows.take([prior.column])[:, 0]),
    )
    return booster.fit(pool, callbacks=[TreeProgress(bar)] if bar is not None else None)


def read_meta(path: Path, name: str) -> dict[str, Any]:
    """`path/meta.json` of an arm-`name` artifact in this format, else a ValueError saying
    what to do."""
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("model") != name:
        raise ValueError(f"artifact: {path} holds a {meta.get('model')!r} model, not {name!r}")
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"artifact: {path} was written in format {meta.get('format')}, this feedlab reads "
            f"format {FORMAT_VERSION}; retrain it with `feedlab train {name} --out {path}`"
        )
    return meta


def rows_per_cutoff(
    pipeline: Pipeline,
    points: Sequence[datetime],
    columns: list[str],
    window_days: float,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
    progress: bool = True,
    label: str = "ranker",
) -> list[TrainingRows]:
    """`labelled_rows` of every cutoff that has any, at most `max_rows` in all, group ids
    unique across cutoffs. The budget is shared out as it goes: each cutoff may fill an equal
    part of what the previous cutoffs left, so a cutoff with few users leaves room to later
    ones. Every cutoff's rows are views into one `RowBuffer`."""
    from tqdm import tqdm

    buffer = RowBuffer(max_rows, columns)
    rng = np.random.default_rng(seed)
    per_cutoff: list[TrainingRows] = []
    for i, c in enumerate(tqdm(points, desc=f"{label}: training rows", disable=not progress)):
        quota = (max_rows - buffer.filled) // (len(points) - i)
        rows = labelled_rows(pipeline, c, columns, window_days, buffer, quota, rng)
        if rows is not None:
            per_cutoff.append(rows)
    if len(per_cutoff) < 2:
        raise ValueError("t0: too few labelled training rows before T0 (need two cutoffs)")
    return per_cutoff


def labelled_rows(
    pipeline: Pipeline,
    cutoff: datetime,
    columns: list[str],
    window_days: float,
    buffer: RowBuffer,
    quota: int,
    rng: np.random.Generator,
) -> TrainingRows | None:
    """The candidates at `cutoff` (seen posts excluded) of users with an event before it and a
    like in [cutoff, cutoff + window), labelled by those likes, appended to `buffer`; users
    none of whose candidates they liked are left out. Users are taken in a random order until
    their rows would pass `quota`: with room for all (the usual case on small data) the rows
    are exactly every such user's, and within a budget a uniform sample of (user, cutoff)
    groups. Only sampled users are ever requested, so the work is bounded by the budget."""
    history = pipeline.builder.history
    window = history.events_between(cutoff, cutoff + timedelta(days=window_days))
    liked_users, liked_posts = window.user_ids[window.is_like], window.post_ids[window.is_like]
    order = np.lexsort((liked_posts, liked_users))
    liked_users, liked_posts = liked_users[order], liked_posts[order]
    users, starts = np.unique(liked_users, return_index=True)
    ends = np.r_[starts[1:], len(liked_users)]
    start = buffer.filled
    for k in rng.permutation(len(users)):
        req = pipeline.request(int(users[k]), cutoff, True, None)
        if not len(req.user.ts) or not len(req.candidates):
            continue
        liked = liked_posts[starts[k] : ends[k]]
        labels = np.isin(pipeline.catalog.post_ids[req.candidates], liked)
        if not labels.any():
            continue
        if buffer.filled - start + len(labels) > quota:
            break
        buffer.append(pipeline.builder.matrix(req, columns), labels, int(users[k]))
    if buffer.filled == start:
        return None
    return buffer.close_cutoff(start, cutoff)


def events_before(history: History, t0: datetime) -> History:
    """`history` itself when it holds nothing at or after `t0` (training loads only the events
    before T0, and a copy of tens of millions of events would double its memory), else
    `history.until(t0)`."""
    return history if len(history.events_between(t0, None)) == 0 else history.until(t0)


class RankedRecommender:
    """A fitted `Ranker` serving on a live History; one instance serves many threads. Posts
    that arrive after loading join through `add_posts`."""

    def __init__(self, name: str, version: str, ranker: Ranker, pipeline: Pipeline) -> None:
        self.name = name
        self.version = version
        self.ranker = ranker
        self.pipeline = pipeline
        self.history = pipeline.builder.history
        self._growing = threading.Lock()

    @property
    def catalog(self) -> PostCatalog:
        return self.pipeline.catalog

    def scored(
        self, user_id: int, at: datetime, exclude: Collection[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(candidate post ids, their scores) for one request."""
        pipeline, scorer = self.pipeline, self.ranker.scorer_
        req = pipeline.request(user_id, at, False, exclude)
        post_ids = pipeline.catalog.post_ids[req.candidates]
        if len(req.candidates) == 0:
            return post_ids, np.zeros(0)
        return post_ids, scorer.score(pipeline.builder.matrix(req, scorer.columns))

    def recommend(
        self, user_id: int, at: datetime, limit: int, exclude: Collection[int] | None = None
    ) -> list[int]:
        post_ids, scores = self.scored(user_id, at, exclude)
        return post_ids[np.argsort(-scores, kind="stable")[:limit]].tolist()

    def add_posts(
        self,
        post_ids: Sequence[int],
        texts: Sequence[str],
        topics: Sequence[str | None] | None = None,
    ) -> int:
        """Make posts that arrived after loading recommendable (posts already known keep
        what they have). Returns how many were added."""
        topics = list(topics) if topics is not None else [None] * len(post_ids)
        if not len(post_ids) == len(texts) == len(topics):
            raise ValueError("posts: post_ids, texts and topics must have the same length")
        with self._growing:
            old = self.pipeline.catalog
            given = zip(post_ids, texts, topics, strict=True)
            fresh = {int(p): (t or "", s) for p, t, s in given if old.index.get(int(p)) < 0}
            if not fresh:
                return 0
            grown = PostCatalog(
                np.concatenate([old.post_ids, np.fromiter(fresh, np.int64, len(fresh))]),
                [*old.texts, *(t for t, _ in fresh.values())],
                [*old.topics, *(s for _, s in fresh.values())],
            )
            profiles = self.pipeline.builder.profiles
            background = any(refit.background for refit in self.pipeline.refits())
            pipeline = self.ranker.pipeline(self.history, grown, profiles)
            for refit in pipeline.refits():
                refit.background = background
            self.pipeline = pipeline
            return len(fresh)

    def refits(self) -> list[DailyRefit]:
        return self.pipeline.refits()
