"""Sufficient statistics: what SQL returns per arm, and what every test in this package reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MeanStats:
    """n, sum and sum of squares of one per-user metric in one arm."""

    n: float
    sum: float
    sum_sq: float

    @classmethod
    def of(cls, values: np.ndarray) -> MeanStats:
        v = np.asarray(values, dtype=float)
        return cls(float(v.size), float(v.sum()), float((v * v).sum()))

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n else float("nan")

    @property
    def var(self) -> float:
        """Sample variance (ddof=1), clipped at 0 against rounding."""
        if self.n < 2:
            return float("nan")
        return max((self.sum_sq - self.sum * self.sum / self.n) / (self.n - 1), 0.0)

    @property
    def var_of_mean(self) -> float:
        return self.var / self.n


@dataclass(frozen=True)
class JointStats:
    """Two per-user quantities of one arm with their cross-product.

    Used for ratio metrics (a = numerator, b = denominator) and for CUPED (a = metric,
    b = pre-period covariate)."""

    n: float
    sum_a: float
    sum_b: float
    sum_aa: float
    sum_bb: float
    sum_ab: float

    @classmethod
    def of(cls, a: np.ndarray, b: np.ndarray) -> JointStats:
        a = np.asarray(a, dtype=float)
        b = np.asarray(b, dtype=float)
        return cls(
            float(a.size),
            float(a.sum()),
            float(b.sum()),
            float((a * a).sum()),
            float((b * b).sum()),
            float((a * b).sum()),
        )

    @property
    def a(self) -> MeanStats:
        return MeanStats(self.n, self.sum_a, self.sum_aa)

    @property
    def b(self) -> MeanStats:
        return MeanStats(self.n, self.sum_b, self.sum_bb)

    @property
    def cov(self) -> float:
        """Sample covariance of a and b (ddof=1)."""
        if self.n < 2:
            return float("nan")
        return (self.sum_ab - self.sum_a * self.sum_b / self.n) / (self.n - 1)

    def __add__(self, other: JointStats) -> JointStats:
        return JointStats(
            self.n + other.n,
            self.sum_a + other.sum_a,
            self.sum_b + other.sum_b,
            self.sum_aa + other.sum_aa,
            self.sum_bb + other.sum_bb,
            self.sum_ab + other.sum_ab,
        )


@dataclass(frozen=True)
class RegressionStats:
    """One per-user metric y and k pre-period covariates x of one arm: n, the sums, and the
    cross-products CUPED's regression needs (x x' and x y)."""

    n: float
    sum_y: float
    sum_yy: float
    sum_x: tuple[float, ...]
    sum_xx: tuple[tuple[float, ...], ...]
    sum_xy: tuple[float, ...]

    @classmethod
    def of(cls, y: np.ndarray, x: np.ndarray) -> RegressionStats:
        """From per-user values: y of shape (n,), x of shape (n, k)."""
        y = np.asarray(y, dtype=float)
        x = np.asarray(x, dtype=float).reshape(y.size, -1)
        return cls(
            float(y.size),
            float(y.sum()),
            float(y @ y),
            tuple(x.sum(axis=0).tolist()),
            tuple(map(tuple, (x.T @ x).tolist())),
            tuple((x.T @ y).tolist()),
        )

    @property
    def y(self) -> MeanStats:
        return MeanStats(self.n, self.sum_y, self.sum_yy)

    @property
    def cov_xx(self) -> np.ndarray:
        """Sample covariance matrix of the covariates (ddof=1)."""
        sx = np.asarray(self.sum_x)
        return (np.asarray(self.sum_xx) - np.outer(sx, sx) / self.n) / (self.n - 1)

    @property
    def cov_xy(self) -> np.ndarray:
        """Sample covariance of each covariate with y (ddof=1)."""
        return (np.asarray(self.sum_xy) - np.asarray(self.sum_x) * self.sum_y / self.n) / (
            self.n - 1
        )

    def __add__(self, other: RegressionStats) -> RegressionStats:
        return RegressionStats(
            self.n + other.n,
            self.sum_y + other.sum_y,
            self.sum_yy + other.sum_yy,
            tuple(np.add(self.sum_x, other.sum_x).tolist()),
            tuple(map(tuple, np.add(self.sum_xx, other.sum_xx).tolist())),
            tuple(np.add(self.sum_xy, other.sum_xy).tolist()),
        )
