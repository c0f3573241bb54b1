"""score = popularity prior + CatBoost correction from the user's taste.

On MovieLens the pre-T0 weeks and the later ones differ (early users rate their back catalogue,
later ones what is new), so a ranker free to use every feature learns the early regime and
ranks below plain recent popularity afterwards. Here the prior (`models.scoring`) carries the
ranking, and CatBoost (its `baseline`) only corrects it from user-level and embedding columns;
the number of trees is picked on held-out cutoffs, zero trees meaning "the prior alone".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from feedlab.models.scoring import PRIOR_EPS, SHARE_PREFIX, PriorColumns, fit_log_prior

__all__ = ["PRIOR_EPS", "SHARE_PREFIX", "PriorScorer", "fit_prior"]


@dataclass
class PriorScorer(PriorColumns):
    """Scores a feature matrix whose columns are `columns` (names, as built at training)."""

    trees: int
    ranker: object = None

    def correction(self, matrix: np.ndarray) -> np.ndarray:
        if self.ranker is None or self.trees == 0:
            return np.zeros(len(matrix))
        return self.raw_scores(self.ranker, self.ranker_matrix(matrix), self.trees)

    def score(self, matrix: np.ndarray) -> np.ndarray:
        return self.prior(matrix) + self.correction(matrix)

    def params(self) -> dict:
        return {**super().params(), "trees": self.trees}


def fit_prior(
    matrix: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    columns: list[str],
    hit_rate,
) -> tuple[str, float, float]:
    """(column, coef, intercept) over every windowed like-share column (see `fit_log_prior`)."""
    shares = [c for c in columns if c.startswith(SHARE_PREFIX) and not c.endswith("_all")]
    if not shares:
        raise ValueError(f"columns: no {SHARE_PREFIX}* column to build the popularity prior on")
    return fit_log_prior(matrix, labels, columns, shares, hit_rate)
