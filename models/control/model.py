"""The control arm at serving time: candidates → point-in-time features → CatBoost scores."""

from __future__ import annotations

import threading
from collections import OrderedDict
import threading
from collections import OrderedDict
from collections.abc import Collection
from datetime import datetime

import numpy as np

from models.candidates import CandidateConfig, CoVisitation, generate
from models.features import FeatureBuilder, Request, UserState
from models.history import History
from models.history import History


def covisit_scores(covisit: CoVisitation, user: UserState) -> dict[str, np.ndarray]:
    """Catalog-wide co-visitation scores for a user: summed and per recent like."""
    recent = user.recent_liked
    total = covisit.scores(recent)
    return {"covisit": total, "covisit_mean": total / max(1, len(recent))}


def scoring_request(
    builder: FeatureBuilder,
    covisit: CoVisitation,
    config: CandidateConfig,
    user_id: int,
    at: datetime,
    exclude_seen: bool,
    exclude: Collection[int] | None = None,
) -> Request:
    """Candidates and context for one (user, at): never a post liked before `at` (nor, with
    `exclude_seen`, any post seen before `at`), nor any post in `exclude`."""
    user = builder.user_state(user_id, at)
    n = len(builder.posts)
    excluded = user.seen_mask(n) if exclude_seen else np.zeros(n, bool)
    excluded[user.liked] = True
    if exclude is not None and len(exclude):
        extra = builder.posts.catalog.index.lookup(np.fromiter(exclude, np.int64, len(exclude)))
        excluded[extra[extra >= 0]] = True
    stats = builder.stats(at)
    scores = covisit_scores(covisit, user)
    candidates = generate(stats, scores["covisit"], user, excluded, config)
    return builder.request(user_id, at, candidates, scores, user=user)


class DailyCoVisitation:
    """Co-visitation refitted per day: the one used at `at` is fitted on likes before the
    midnight starting `at`'s day, so it is point-in-time and at most a day stale (training
    fits one per cutoff day the same way; a fixed fit would go stale and skew serving from
    training). Keeps the last few days."""

    KEEP = 4

    def __init__(self, history: History, catalog_ids: np.ndarray, neighbours: int) -> None:
        self.history = history
        self.catalog_ids = catalog_ids
        self.neighbours = neighbours
        self._fits: OrderedDict[datetime, CoVisitation] = OrderedDict()
        self._lock = threading.Lock()

    def at(self, at: datetime) -> CoVisitation:
        day = datetime(at.year, at.month, at.day)
        with self._lock:
            fit = self._fits.get(day)
            if fit is None:
                fit = CoVisitation.fit(self.history, day, self.catalog_ids, self.neighbours)
                self._fits[day] = fit
                while len(self._fits) > self.KEEP:
                    self._fits.popitem(last=False)
            self._fits.move_to_end(day)
            return fit


class ControlRecommender:
    """CatBoost over classic point-in-time features; one instance serves many threads."""

    name = "control"

    def __init__(
        self,
        builder: FeatureBuilder,
        covisit: DailyCoVisitation,
        ranker: object,
        columns: list[str],
        config: CandidateConfig,
        version: str,
    ) -> None:
        self.builder = builder
        self.history = builder.history
        self.covisit = covisit
        self.ranker = ranker
        self.columns = columns
        self.config = config
        self.version = version

    def recommend(
        self, user_id: int, at: datetime, limit: int, exclude: Collection[int] | None = None
    ) -> list[int]:
        req = scoring_request(
            self.builder, self.covisit.at(at), self.config, user_id, at, False, exclude
        )
        if len(req.candidates) == 0:
            return []
        matrix, names = self.builder.matrix(req)
        if names != self.columns:
            raise RuntimeError("control: feature columns differ from the trained model's")
        scores = self.ranker.predict(matrix)
        order = np.argsort(-scores, kind="stable")[:limit]
        return self.builder.posts.catalog.post_ids[req.candidates[order]].tolist()

    def observe(self, events: list) -> None:
        """Stateless beside the shared History."""
