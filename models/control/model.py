"""The control arm at serving time: candidates → point-in-time features → CatBoost scores."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import numpy as np

from models.candidates import CandidateConfig, CoVisitation, generate
from models.features import FeatureBuilder, Request, UserState


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


class ControlRecommender:
    """CatBoost over classic point-in-time features; one instance serves many threads."""

    name = "control"

    def __init__(
        self,
        builder: FeatureBuilder,
        covisit: CoVisitation,
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
            self.builder, self.covisit, self.config, user_id, at, False, exclude
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
