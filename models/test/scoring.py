"""score = popularity prior + CatBoost correction from the user's taste.

On MovieLens the pre-T0 weeks and the later ones differ (early users rate their back catalogue,
later ones what is new), so a ranker free to use every feature learns the early regime and
ranks below plain recent popularity afterwards. Here the prior — a logistic fit of
log(like share in the recent window that ranks pre-T0 candidates best) — carries the ranking,
and CatBoost (its `baseline`) only corrects it from user-level and embedding columns; the
number of trees is picked on held-out cutoffs, zero trees meaning "the prior alone".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRIOR_EPS = 1e-5
SHARE_PREFIX = "post_like_share_"


@dataclass
class PriorScorer:
    """Scores a feature matrix whose columns are `columns` (names, as built at training)."""

    columns: list[str]
    ranker_columns: list[str]
    prior_column: str
    prior_coef: float
    prior_intercept: float
    trees: int
    ranker: object = None

    def __post_init__(self) -> None:
        missing = [c for c in [self.prior_column, *self.ranker_columns] if c not in self.columns]
        if missing:
            raise ValueError(f"columns: the feature matrix lacks {missing}")
        self._idx = [self.columns.index(c) for c in self.ranker_columns]
        self._prior = self.columns.index(self.prior_column)

    def prior(self, matrix: np.ndarray) -> np.ndarray:
        share = matrix[:, self._prior].astype(np.float64)
        return self.prior_coef * np.log(share + PRIOR_EPS) + self.prior_intercept

    def correction(self, matrix: np.ndarray, trees: int | None = None) -> np.ndarray:
        trees = self.trees if trees is None else trees
        if self.ranker is None or trees == 0:
            return np.zeros(len(matrix))
        return self.ranker.predict(
            matrix[:, self._idx], prediction_type="RawFormulaVal", ntree_end=trees
        )

    def score(self, matrix: np.ndarray) -> np.ndarray:
        return self.prior(matrix) + self.correction(matrix)

    def params(self) -> dict:
        return {
            "ranker_columns": self.ranker_columns,
            "prior_column": self.prior_column,
            "prior_coef": self.prior_coef,
            "prior_intercept": self.prior_intercept,
            "trees": self.trees,
        }


def fit_prior(
    matrix: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    columns: list[str],
    hit_rate,
) -> tuple[str, float, float]:
    """(column, coef, intercept): the like-share window whose ranking hits most training
    groups, and a logistic fit of the label on its log."""
    from sklearn.linear_model import LogisticRegression

    shares = [c for c in columns if c.startswith(SHARE_PREFIX) and not c.endswith("_all")]
    if not shares:
        raise ValueError(f"columns: no {SHARE_PREFIX}* column to build the popularity prior on")
    best = max(shares, key=lambda c: hit_rate(matrix[:, columns.index(c)]))
    x = np.log(matrix[:, columns.index(best)].astype(np.float64) + PRIOR_EPS)[:, None]
    fit = LogisticRegression().fit(x, labels.astype(int))
    return best, float(fit.coef_[0, 0]), float(fit.intercept_[0])
