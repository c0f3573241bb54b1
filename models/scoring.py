"""The popularity prior both arms boost from: a logistic fit of log(like share in the recent
window that ranks pre-T0 candidates best). CatBoost then corrects it (its `baseline`), so a
model that learns little still ranks like the best popularity list."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

PRIOR_EPS = 1e-5
SHARE_PREFIX = "post_like_share_"


@dataclass
class PriorColumns:
    """Prior and ranker-column arithmetic over a feature matrix whose columns are `columns`;
    each arm's scorer extends it with its CatBoost ranker."""

    columns: list[str]
    ranker_columns: list[str]
    prior_column: str
    prior_coef: float
    prior_intercept: float

    def __post_init__(self) -> None:
        missing = [c for c in [self.prior_column, *self.ranker_columns] if c not in self.columns]
        if missing:
            raise ValueError(f"columns: the feature matrix lacks {missing}")
        self._idx = [self.columns.index(c) for c in self.ranker_columns]
        self._prior = self.columns.index(self.prior_column)

    def prior(self, matrix: np.ndarray) -> np.ndarray:
        share = matrix[:, self._prior].astype(np.float64)
        return self.prior_coef * np.log(share + PRIOR_EPS) + self.prior_intercept

    def ranker_matrix(self, matrix: np.ndarray) -> np.ndarray:
        return matrix[:, self._idx]

    @staticmethod
    def raw_scores(ranker, matrix: np.ndarray, trees: int = 0) -> np.ndarray:
        """CatBoost's raw scores from the first `trees` trees (0: all), on one thread: a
        request scores a few hundred rows, and spreading them over threads costs more than it
        saves on a server already busy with other requests."""
        return ranker.predict(
            matrix, prediction_type="RawFormulaVal", ntree_end=trees, thread_count=1
        )

    def params(self) -> dict:
        return {
            "ranker_columns": self.ranker_columns,
            "prior_column": self.prior_column,
            "prior_coef": self.prior_coef,
            "prior_intercept": self.prior_intercept,
        }


def fit_log_prior(
    matrix: np.ndarray,
    labels: np.ndarray,
    columns: list[str],
    candidates: Sequence[str],
    hit_rate: Callable[[np.ndarray], float],
) -> tuple[str, float, float]:
    """(column, coef, intercept): the candidate like-share column whose ranking hits most
    training groups, and a logistic fit of the label on its log."""
    from sklearn.linear_model import LogisticRegression

    best = max(candidates, key=lambda c: hit_rate(matrix[:, columns.index(c)]))
    x = np.log(matrix[:, columns.index(best)].astype(np.float64) + PRIOR_EPS)[:, None]
    fit = LogisticRegression().fit(x, labels.astype(int))
    return best, float(fit.coef_[0, 0]), float(fit.intercept_[0])
