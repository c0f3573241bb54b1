"""The control arm at serving time: candidates → point-in-time features → CatBoost scores."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from feedlab.models.candidates import CandidateConfig, DailyCoVisitation, scoring_request
from feedlab.models.features import FeatureBuilder
from feedlab.models.scoring import PriorColumns


@dataclass
class Scorer(PriorColumns):
    """score = popularity prior (`models.scoring`) + CatBoost correction from `ranker_columns`;
    the ranker is already cut to the picked number of trees."""

    ranker: object = None

    def score(self, matrix: np.ndarray) -> np.ndarray:
        return self.prior(matrix) + self.raw_scores(self.ranker, self.ranker_matrix(matrix))


class ControlRecommender:
    """CatBoost over classic point-in-time features; one instance serves many threads."""

    name = "control"

    def __init__(
        self,
        builder: FeatureBuilder,
        covisit: DailyCoVisitation,
        scorer: Scorer,
        columns: list[str],
        config: CandidateConfig,
        version: str,
    ) -> None:
        self.builder = builder
        self.history = builder.history
        self.covisit = covisit
        self.scorer = scorer
        self.columns = columns
        self.config = config
        self.version = version
        self._cached_positions: tuple[tuple[str, ...], list[int]] | None = None

    def recommend(
        self, user_id: int, at: datetime, limit: int, exclude: Collection[int] | None = None
    ) -> list[int]:
        post_ids, scores = self.scored(user_id, at, exclude)
        order = np.argsort(-scores, kind="stable")[:limit]
        return post_ids[order].tolist()

    def scored(
        self, user_id: int, at: datetime, exclude: Collection[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(candidate post ids, their scores) for one request; `recommend` takes the top."""
        req = scoring_request(
            self.builder, self.covisit.at(at), self.config, user_id, at, False, exclude
        )
        post_ids = self.builder.posts.catalog.post_ids[req.candidates]
        if len(req.candidates) == 0:
            return post_ids, np.zeros(0)
        matrix, names = self.builder.matrix(req)
        return post_ids, self.scorer.score(matrix[:, self._positions(names)])

    def _positions(self, names: list[str]) -> list[int]:
        """Where the trained columns sit among the built ones (cached per column list)."""
        key = tuple(names)
        if self._cached_positions is None or self._cached_positions[0] != key:
            missing = [c for c in self.columns if c not in names]
            if missing:
                raise RuntimeError(f"control: the feature builder lacks trained columns {missing}")
            self._cached_positions = (key, [names.index(c) for c in self.columns])
        return self._cached_positions[1]

    def observe(self, events: list) -> None:
        """Stateless beside the shared History."""
