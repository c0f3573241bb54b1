"""Fixed-horizon two-arm comparisons over sufficient statistics.

Every comparison is test minus control; `Comparison` carries the absolute difference with its
CI, the p-value and the relative lift with its delta-method CI."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from feedlab.analysis.stats.moments import JointStats, MeanStats
from scipy import stats


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def relative_lift(
    mean_a: float, var_mean_a: float, mean_b: float, var_mean_b: float, alpha: float = 0.05
) -> tuple[float, float, float]:
    """mean_b / mean_a - 1 with a delta-method normal CI (arms independent)."""
    if mean_a == 0:
        return float("nan"), float("nan"), float("nan")
    lift = mean_b / mean_a - 1.0
    var = var_mean_b / mean_a**2 + mean_b**2 * var_mean_a / mean_a**4
    half = stats.norm.ppf(1 - alpha / 2) * math.sqrt(max(var, 0.0))
    return lift, lift - half, lift + half


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
    half = stats.t.ppf(1 - alpha / 2, df) * se
    lift = relative_lift(a.mean, va, b.mean, vb, alpha)
    return Comparison("welch", a.mean, b.mean, diff, diff - half, diff + half, p, *lift, t, se)


def two_proportion_ztest(
    x_a: float, n_a: float, x_b: float, n_b: float, alpha: float = 0.05
) -> Comparison:
    """z-test with pooled variance for the p-value (as statsmodels' proportions_ztest) and an
    unpooled Wald CI for the difference (statsmodels' confint_proportions_2indep 'wald')."""
    pa, pb = x_a / n_a, x_b / n_b
    pooled = (x_a + x_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    va, vb = pa * (1 - pa) / n_a, pb * (1 - pb) / n_b
    se = math.sqrt(va + vb)
    if se_pooled == 0:
        return _degenerate("ztest", pa, pb)
    z = (pb - pa) / se_pooled
    p = 2 * stats.norm.sf(abs(z))
    half = stats.norm.ppf(1 - alpha / 2) * se
    lift = relative_lift(pa, va, pb, vb, alpha)
    return Comparison("ztest", pa, pb, pb - pa, pb - pa - half, pb - pa + half, p, *lift, z, se)


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
    half = stats.norm.ppf(1 - alpha / 2) * se
    lift = relative_lift(ra, va, rb, vb, alpha)
    return Comparison("delta", ra, rb, rb - ra, rb - ra - half, rb - ra + half, p, *lift, z, se)


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
    return Comparison("mannwhitney", mean_a, mean_b, diff, nan, nan, p, nan, nan, nan, z, nan)


def cuped_adjust(a: JointStats, b: JointStats) -> tuple[MeanStats, MeanStats, float]:
    """CUPED: y - theta * (x - mean(x)) with theta = cov(y, x) / var(x) over both arms.

    JointStats here hold a = metric y, b = pre-period covariate x. Returns the adjusted
    per-arm MeanStats (exact, so Welch on them equals Welch on adjusted per-user values) and
    theta."""
    pooled = a + b
    var_x = pooled.b.var
    theta = pooled.cov / var_x if var_x and var_x > 0 else 0.0
    x_bar = pooled.sum_b / pooled.n
    return _adjusted(a, theta, x_bar), _adjusted(b, theta, x_bar), theta


def _adjusted(s: JointStats, theta: float, x_bar: float) -> MeanStats:
    mean = (s.sum_a - theta * (s.sum_b - s.n * x_bar)) / s.n
    var = s.a.var - 2 * theta * s.cov + theta**2 * s.b.var
    return MeanStats(s.n, mean * s.n, (s.n - 1) * var + s.n * mean**2)


def cuped_welch(a: JointStats, b: JointStats, alpha: float = 0.05) -> tuple[Comparison, float]:
    """Welch's t-test on CUPED-adjusted metrics; returns the comparison and theta."""
    adj_a, adj_b, theta = cuped_adjust(a, b)
    res = welch_ttest(adj_a, adj_b, alpha)
    return _renamed(res, "cuped"), theta


def _renamed(c: Comparison, method: str) -> Comparison:
    d = c.as_dict()
    d["method"] = method
    return Comparison(**d)


def _degenerate(method: str, mean_a: float, mean_b: float) -> Comparison:
    """No variance at all (e.g. both arms all zeros): nothing can be concluded."""
    nan = float("nan")
    return Comparison(
        method, mean_a, mean_b, mean_b - mean_a, nan, nan, 1.0, nan, nan, nan, nan, 0.0
    )
