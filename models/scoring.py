"""score = popularity prior + CatBoost correction.

On MovieLens the pre-T0 weeks and the later ones differ (early users rate their back catalogue,
later ones what is new), so a ranker free to use every feature learns the early regime and
ranks below plain recent popularity afterwards. Here a logistic fit on the log of one post
like-share column (the window that ranks pre-T0 candidates best) carries the ranking, and
CatBoost, with the prior as its `baseline`, only corrects it from a few user-level and arm
columns. Zero trees means "the prior alone".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PRIOR_EPS = 1e-5
SHARE_PREFIX = "post_like_share_"


@dataclass(frozen=True)
class Prior:
    """`coef * log(share + eps) + intercept` of the like-share column `column`."""

    column: str
    coef: float
    intercept: float

    def __call__(self, share: np.ndarray) -> np.ndarray:
        return self.coef * np.log(share.astype(np.float64) + PRIOR_EPS) + self.intercept

    @classmethod
    def fit(
        cls,
        shares: dict[str, np.ndarray],
        labels: np.ndarray,
        hit_rate: Callable[[np.ndarray], float],
    ) -> Prior:
        """The like-share column whose ranking hits most training groups, and a logistic fit
        of the label on its log."""
        from sklearn.linear_model import LogisticRegression

        best = max(shares, key=lambda c: hit_rate(shares[c]))
        x = np.log(shares[best].astype(np.float64) + PRIOR_EPS)[:, None]
        fit = LogisticRegression().fit(x, labels.astype(int))
        return cls(best, float(fit.coef_[0, 0]), float(fit.intercept_[0]))


@dataclass(frozen=True)
class Scorer:
    """Scores a matrix whose columns are `columns`: the prior's column, then `ranker_columns`.
    `booster` is a CatBoost model of exactly the picked trees (None: zero trees)."""

    prior: Prior
    ranker_columns: tuple[str, ...]
    booster: Any = None

    @property
    def columns(self) -> list[str]:
        return [self.prior.column, *self.ranker_columns]

    @property
    def trees(self) -> int:
        return 0 if self.booster is None else int(self.booster.tree_count_)

    def score(self, matrix: np.ndarray) -> np.ndarray:
        prior = self.prior(matrix[:, 0])
        if self.booster is None:
            return prior
        return prior + raw_scores(self.booster, matrix[:, 1:])


def raw_scores(booster: Any, matrix: np.ndarray) -> np.ndarray:
    """CatBoost's raw scores on one thread: a request scores a few hundred rows, and spreading
    them over threads costs more than it saves on a server already busy with other requests."""
    return booster.predict(matrix, prediction_type="RawFormulaVal", thread_count=1)


def share_columns(windows: Sequence[str]) -> list[str]:
    """The like-share columns the prior is picked among."""
    return [f"{SHARE_PREFIX}{w}" for w in windows]
