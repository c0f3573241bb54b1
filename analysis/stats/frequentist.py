"""Fixed-horizon two-arm comparisons over sufficient statistics.

Every comparison is test minus control; `Comparison` carries the absolute difference with its
CI, the p-value and the relative lift with its Fieller CI. Each test uses one standard error
and one critical value for its p-value, its difference CI and its lift CI, so "the CI excludes
0" and "p < alpha" always agree."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from feedlab.analysis.stats.moments import JointStats, MeanStats, RegressionStats
from scipy import stats

BOUNDED, EXTERIOR, UNBOUNDED = "bounded", "exterior", "unbounded"


@dataclass(frozen=True)
class Comparison:
    method: str
    mean_control: float
    mean_test: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    lift: float
    lift_ci_low: float
    lift_ci_high: float
    statistic: float
    se: float
    lift_ci_kind: str = BOUNDED
    """bounded: [low, high]; exterior: (-inf, low] and [high, inf); unbounded: every lift
    (Fieller's set when the control mean is not distinguishable from 0)."""

    def lift_ci_excludes(self, lift: float) -> bool:
        """Whether `lift` lies outside the lift confidence set."""
        if self.lift_ci_kind == BOUNDED:
            return lift < self.lift_ci_low or lift > self.lift_ci_high
        if self.lift_ci_kind == EXTERIOR:
            return self.lift_ci_low < lift < self.lift_ci_high
        return False


def fieller_lift(
    mean_a: float, var_mean_a: float, mean_b: float, var_mean_b: float, crit: float
) -> tuple[float, float, float, str]:
    """mean_b / mean_a - 1 with Fieller's confidence set (arms independent): every ratio r
    with (mean_b - r mean_a)^2 <= crit^2 (var_b + r^2 var_a). At r = 1 this is the test of the
    difference with the same SE and critical value, so the set excludes lift 0 exactly when
    the test rejects (the delta method's CI can disagree at small n)."""
    nan = float("nan")
    lift = mean_b / mean_a - 1.0 if mean_a != 0 else nan
    c2 = crit * crit
    qa = mean_a * mean_a - c2 * var_mean_a
    qb = -2.0 * mean_a * mean_b
    qc = mean_b * mean_b - c2 * var_mean_b
    disc = qb * qb - 4.0 * qa * qc
    if qa == 0 or (qa < 0 and disc <= 0):
        return lift, nan, nan, UNBOUNDED
    root = math.sqrt(max(disc, 0.0))
    r1, r2 = sorted(((-qb - root) / (2 * qa), (-qb + root) / (2 * qa)))
    return lift, r1 - 1.0, r2 - 1.0, BOUNDED if qa > 0 else EXTERIOR


def welch_ttest(a: MeanStats, b: MeanStats, alpha: float = 0.05) -> Comparison:
    """Welch t-test; same p-value and CI as scipy ttest_ind(equal_var=False)."""
    va, vb = a.var_of_mean, b.var_of_mean
    se = math.sqrt(va + vb)
    diff = b.mean - a.mean
    if se == 0 or math.isnan(se):
        return _degenerate("welch", a.mean, b.mean)
    df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    t = diff / se
    p = 2 * stats.t.sf(abs(t), df)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return _comparison("welch", a.mean, va, b.mean, vb, p, crit, t)


def _comparison(
    method: str, ma: float, va: float, mb: float, vb: float, p: float, crit: float, stat: float
) -> Comparison:
    """One SE (sqrt(va + vb)) and one critical value for the difference CI and Fieller's
    lift set, the same the p-value came from."""
    se = math.sqrt(va + vb)
    diff = mb - ma
    half = crit * se
    lift, low, high, kind = fieller_lift(ma, va, mb, vb, crit)
    return Comparison(
        method, ma, mb, diff, diff - half, diff + half, p, lift, low, high, stat, se, kind
    )


def two_proportion_ztest(
    x_a: float, n_a: float, x_b: float, n_b: float, alpha: float = 0.05
) -> Comparison:
    """Wald z-test with the unpooled SE for the p-value and the CI alike (statsmodels'
    test_proportions_2indep and confint_proportions_2indep, method 'wald'): a pooled SE for
    p beside an unpooled one for the CI can make the two disagree."""
    pa, pb = x_a / n_a, x_b / n_b
    va, vb = pa * (1 - pa) / n_a, pb * (1 - pb) / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        return _degenerate("ztest", pa, pb)
    z = (pb - pa) / se
    p = 2 * stats.norm.sf(abs(z))
    return _comparison("ztest", pa, va, pb, vb, p, stats.norm.ppf(1 - alpha / 2), z)


def ratio_var(s: JointStats) -> float:
    """Delta-method variance of sum_a / sum_b (a ratio of per-user sums, users independent)."""
    ma, mb = s.sum_a / s.n, s.sum_b / s.n
    return (s.a.var / mb**2 - 2 * ma * s.cov / mb**3 + ma**2 * s.b.var / mb**4) / s.n


def ratio_ztest(a: JointStats, b: JointStats, alpha: float = 0.05) -> Comparison:
    """Ratio metric (e.g. likes / posts served) compared with delta-method variances."""
    ra, rb = a.sum_a / a.sum_b, b.sum_a / b.sum_b
    va, vb = ratio_var(a), ratio_var(b)
    se = math.sqrt(va + vb)
    if se == 0 or math.isnan(se):
        return _degenerate("delta", ra, rb)
    z = (rb - ra) / se
    p = 2 * stats.norm.sf(abs(z))
    return _comparison("delta", ra, va, rb, vb, p, stats.norm.ppf(1 - alpha / 2), z)


def mann_whitney(
    n_a: float, n_b: float, rank_sum_a: float, tie_term: float, mean_a: float, mean_b: float
) -> Comparison:
    """Two-sided Mann-Whitney U from ranks (normal approximation, tie and continuity
    corrections): equals scipy's mannwhitneyu(method='asymptotic'). `rank_sum_a` is the sum of
    mid-ranks of arm a in the pooled sample, `tie_term` is sum(t**3 - t) over tie groups; both
    come from SQL window functions so per-user values never leave the database."""
    n = n_a + n_b
    u_a = rank_sum_a - n_a * (n_a + 1) / 2
    u = max(u_a, n_a * n_b - u_a)
    mu = n_a * n_b / 2
    s = math.sqrt(n_a * n_b / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    if s == 0:
        return _degenerate("mannwhitney", mean_a, mean_b)
    z = (u - mu - 0.5) / s
    p = min(2 * stats.norm.sf(z), 1.0)
    nan = float("nan")
    diff = mean_b - mean_a
    return Comparison(
        "mannwhitney", mean_a, mean_b, diff, nan, nan, p, nan, nan, nan, z, nan, UNBOUNDED
    )


@dataclass(frozen=True)
class Cuped:
    """CUPED's outcome: the adjusted Welch test, or why it was not applied (then `result` is
    None and nothing of it may be reported as a result)."""

    applied: bool
    reason: str | None
    theta: tuple[float, ...]
    result: Comparison | None


def cuped_test(a: RegressionStats, b: RegressionStats, alpha: float = 0.05) -> Cuped:
    """CUPED as a regression adjustment: y - theta . (x - mean(x)), theta the least-squares
    coefficients of y on the covariates x over both arms (pooled, so theta does not depend on
    the arm). Covariates without variance are dropped; with none left, or theta all 0, CUPED
    is "not applied". The per-arm adjusted sufficient statistics are exact, so Welch on them
    equals Welch on the adjusted per-user values."""
    pooled = a + b
    cov_xx, cov_xy = pooled.cov_xx, pooled.cov_xy
    keep = np.flatnonzero(np.diag(cov_xx) > 0) if pooled.n > 1 else np.array([], dtype=int)
    if keep.size == 0:
        return Cuped(False, "the pre-period covariate has no variance", (), None)
    theta = np.zeros(len(pooled.sum_x))
    theta[keep] = np.linalg.lstsq(cov_xx[np.ix_(keep, keep)], cov_xy[keep], rcond=None)[0]
    if not np.any(theta):
        return Cuped(False, "theta = 0: the pre-period covariate carries no information", (), None)
    x_bar = np.asarray(pooled.sum_x) / pooled.n
    adj_a, adj_b = _adjusted(a, theta, x_bar), _adjusted(b, theta, x_bar)
    res = welch_ttest(adj_a, adj_b, alpha)
    return Cuped(True, None, tuple(float(t) for t in theta), replace(res, method="cuped"))


def _adjusted(s: RegressionStats, theta: np.ndarray, x_bar: np.ndarray) -> MeanStats:
    mean = float(s.y.mean - theta @ (np.asarray(s.sum_x) / s.n - x_bar))
    var = s.y.var - 2 * float(theta @ s.cov_xy) + float(theta @ s.cov_xx @ theta)
    var = max(var, 0.0)
    return MeanStats(s.n, mean * s.n, (s.n - 1) * var + s.n * mean**2)


def _degenerate(method: str, mean_a: float, mean_b: float) -> Comparison:
    """No variance at all (e.g. both arms all zeros): nothing can be concluded."""
    nan = float("nan")
    return Comparison(
        method, mean_a, mean_b, mean_b - mean_a, nan, nan, 1.0, nan, nan, nan, nan, 0.0, UNBOUNDED
    )
