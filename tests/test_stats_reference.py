"""Every p-value and CI of analysis.stats against scipy/statsmodels on the raw per-user values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from feedlab.analysis.stats.bootstrap import percentiles, poisson_bootstrap
from feedlab.analysis.stats.frequentist import (
    cuped_test,
    mann_whitney,
    ratio_ztest,
    two_proportion_ztest,
    welch_ttest,
)
from feedlab.analysis.stats.moments import JointStats, MeanStats, RegressionStats
from feedlab.analysis.stats.multiple import benjamini_hochberg, holm
from feedlab.analysis.stats.power import minimum_detectable_effect, plan_sample_size, power_for
from feedlab.analysis.stats.sequential import cs_half_width, obf_boundaries, sequential_test
from feedlab.analysis.stats.srm import srm_test
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep
from statsmodels.stats.proportion import test_proportions_2indep as wald_2indep
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

TOL = 1e-9


@pytest.fixture
def arms():
    rng = np.random.default_rng(7)
    a = rng.poisson(1.2, 800).astype(float) / rng.integers(1, 6, 800)
    b = rng.poisson(1.35, 650).astype(float) / rng.integers(1, 6, 650)
    return a, b


def test_welch_matches_scipy(arms):
    a, b = arms
    res = welch_ttest(MeanStats.of(a), MeanStats.of(b))
    ref = stats.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert res.p_value == pytest.approx(ref.pvalue, abs=TOL)
    assert res.statistic == pytest.approx(ref.statistic, abs=TOL)
    assert (res.ci_low, res.ci_high) == pytest.approx((ci.low, ci.high), abs=TOL)


def test_lift_ci_is_fiellers_set_with_the_tests_own_se_and_critical_value(arms):
    a, b = arms
    res = welch_ttest(MeanStats.of(a), MeanStats.of(b))
    ma, mb = a.mean(), b.mean()
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    crit = stats.t.ppf(0.975, df)
    assert res.lift == pytest.approx(mb / ma - 1, abs=TOL)
    assert res.lift_ci_kind == "bounded"

    def fieller_stat(lift: float) -> float:
        r = 1 + lift
        return abs(mb - r * ma) / np.sqrt(vb + r * r * va)

    # the ends are exactly where the test of "ratio = r" sits on its critical value
    assert fieller_stat(res.lift_ci_low) == pytest.approx(crit, abs=TOL)
    assert fieller_stat(res.lift_ci_high) == pytest.approx(crit, abs=TOL)
    assert fieller_stat(res.lift) < crit


def _rank_inputs(a, b):
    pooled = np.concatenate([a, b])
    ranks = stats.rankdata(pooled)
    _, counts = np.unique(pooled, return_counts=True)
    return ranks[: a.size].sum(), float((counts.astype(float) ** 3 - counts).sum())


def test_mann_whitney_from_ranks_matches_scipy(arms):
    a, b = arms
    rank_sum, ties = _rank_inputs(a, b)
    res = mann_whitney(a.size, b.size, rank_sum, ties, a.mean(), b.mean())
    ref = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")
    assert ties > 0  # the data has ties, so the tie correction is exercised
    assert res.p_value == pytest.approx(ref.pvalue, abs=TOL)


def test_two_proportion_ztest_matches_statsmodels():
    res = two_proportion_ztest(412, 3000, 468, 3100)
    ref = wald_2indep(468, 3100, 412, 3000, method="wald", compare="diff")
    z, p = ref.statistic, ref.pvalue
    lo, hi = confint_proportions_2indep(468, 3100, 412, 3000, method="wald", compare="diff")
    assert res.p_value == pytest.approx(p, abs=TOL)
    assert res.statistic == pytest.approx(z, abs=TOL)
    assert (res.ci_low, res.ci_high) == pytest.approx((lo, hi), abs=TOL)


def test_ratio_metric_delta_method_matches_linearised_ztest():
    rng = np.random.default_rng(3)
    den_a, den_b = rng.integers(1, 30, 900) * 5.0, rng.integers(1, 30, 1000) * 5.0
    num_a = rng.binomial(den_a.astype(int), 0.04).astype(float)
    num_b = rng.binomial(den_b.astype(int), 0.046).astype(float)
    res = ratio_ztest(JointStats.of(num_a, den_a), JointStats.of(num_b, den_b))
    # pseudo-values R + (num - R den) / mean(den): mean R, variance of the linearisation
    ra, rb = num_a.sum() / den_a.sum(), num_b.sum() / den_b.sum()
    pa = ra + (num_a - ra * den_a) / den_a.mean()
    pb = rb + (num_b - rb * den_b) / den_b.mean()
    cm = CompareMeans(DescrStatsW(pb), DescrStatsW(pa))
    z, p = cm.ztest_ind(usevar="unequal")
    lo, hi = cm.zconfint_diff(usevar="unequal")
    assert res.p_value == pytest.approx(p, abs=TOL)
    assert res.statistic == pytest.approx(z, abs=TOL)
    assert (res.ci_low, res.ci_high) == pytest.approx((lo, hi), abs=TOL)


def _cuped_reference(ya, yb, xa, xb):
    """Least squares of y on the centred pooled covariates, then scipy's Welch."""
    x = np.vstack([xa, xb])
    y = np.concatenate([ya, yb])
    xc = x - x.mean(axis=0)
    theta = np.linalg.lstsq(xc, y - y.mean(), rcond=None)[0]
    adj = y - xc @ theta
    return theta, stats.ttest_ind(adj[ya.size :], adj[: ya.size], equal_var=False)


def test_cuped_equals_welch_on_adjusted_values():
    rng = np.random.default_rng(11)
    xa, xb = rng.gamma(2, 0.1, 700), rng.gamma(2, 0.1, 720)
    ya = 0.6 * xa + rng.normal(0, 0.05, 700)
    yb = 0.6 * xb + 0.01 + rng.normal(0, 0.05, 720)
    res = cuped_test(RegressionStats.of(ya, xa), RegressionStats.of(yb, xb))
    theta, ref = _cuped_reference(ya, yb, xa[:, None], xb[:, None])
    ci = ref.confidence_interval(0.95)
    plain = welch_ttest(MeanStats.of(ya), MeanStats.of(yb))
    assert res.applied and res.theta == pytest.approx(theta.tolist(), abs=TOL)
    assert res.result.p_value == pytest.approx(ref.pvalue, abs=TOL)
    assert (res.result.ci_low, res.result.ci_high) == pytest.approx((ci.low, ci.high), abs=TOL)
    assert res.result.ci_high - res.result.ci_low < 0.5 * (plain.ci_high - plain.ci_low)


def test_cuped_with_a_missing_data_indicator_is_the_two_covariate_regression():
    rng = np.random.default_rng(12)
    d = [rng.random(n) < 0.6 for n in (500, 520)]
    x = [np.where(di, rng.gamma(2, 0.1, di.size), 0.0) for di in d]
    y = [0.5 * xi + 0.05 * di + rng.normal(0, 0.05, xi.size) for xi, di in zip(x, d, strict=True)]
    cov = [np.column_stack([xi, di]) for xi, di in zip(x, d, strict=True)]
    res = cuped_test(RegressionStats.of(y[0], cov[0]), RegressionStats.of(y[1], cov[1]))
    theta, ref = _cuped_reference(y[0], y[1], cov[0], cov[1])
    assert res.theta == pytest.approx(theta.tolist(), abs=TOL)
    assert res.result.p_value == pytest.approx(ref.pvalue, abs=TOL)


def test_cuped_that_cannot_help_is_not_applied():
    rng = np.random.default_rng(13)
    ya, yb = rng.random(100), rng.random(100)
    none = cuped_test(RegressionStats.of(ya, np.zeros(100)), RegressionStats.of(yb, np.zeros(100)))
    assert not none.applied and none.result is None and "no variance" in none.reason
    x = np.tile([1.0, -1.0], 50)
    y = np.tile([2.0, 2.0, 3.0, 3.0], 25)  # orthogonal to x in both arms: theta = 0
    flat = cuped_test(RegressionStats.of(y, x), RegressionStats.of(y + 0.1, x))
    assert not flat.applied and "theta = 0" in flat.reason


def test_holm_matches_statsmodels():
    p = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04]
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1].tolist(), abs=TOL)
    bh = multipletests(p, method="fdr_bh")[1].tolist()
    assert benjamini_hochberg(p) == pytest.approx(bh, abs=TOL)


def test_confidence_sequence_matches_gbstats_formula():
    """GrowthBook's SequentialTwoSidedTTest (gbstats 0.8, absolute difference): rho from the
    tuning parameter, N = n_a + n_b, half-width sqrt(s2) sqrt(2 (N rho^2 + 1) log(sqrt(N rho^2
    + 1) / alpha) / (N rho)^2) with s2 = Var(diff) N; transcribed here as the reference."""
    alpha, tune, n_a, n_b, se = 0.05, 5000.0, 1200, 1300, 0.013
    rho = np.sqrt((-2 * np.log(alpha) + np.log(-2 * np.log(alpha) + 1)) / tune)
    n = n_a + n_b
    s2 = se**2 * n
    ref = np.sqrt(s2) * np.sqrt(
        2 * (n * rho**2 + 1) * np.log(np.sqrt(n * rho**2 + 1) / alpha) / (n * rho) ** 2
    )
    assert cs_half_width(se, n, alpha, tune) == pytest.approx(ref, abs=TOL)
    assert cs_half_width(se, n, alpha, tune) > stats.norm.ppf(0.975) * se  # wider than fixed


def test_srm_matches_chisquare_and_flags_the_documented_cases():
    res = srm_test({"control": 101_000, "test": 99_000}, {"control": 50, "test": 50})
    ref = stats.chisquare([101_000, 99_000])
    assert res.p_value == pytest.approx(ref.pvalue, abs=TOL)
    assert res.flagged  # 50.5 / 49.5 at 200,000 users
    assert not srm_test({"control": 100_000, "test": 100_000}, {"control": 50, "test": 50}).flagged
    uneven = srm_test({"a": 2_000, "b": 6_000}, {"a": 1, "b": 3})
    assert uneven.expected == {"a": 2_000, "b": 6_000} and not uneven.flagged


def test_power_matches_statsmodels_for_means_and_proportions():
    nip = NormalIndPower()
    # mean metric: effect size d = delta / sd
    got = power_for(2.0, 0.03, 5_000, 5_000, sd=1.5)
    assert got == pytest.approx(nip.power(0.06 / 1.5, 5_000, 0.05, ratio=1.0), abs=TOL)
    # proportion: d = delta / sqrt((p1 q1 + p2 q2) / 2) with equal arms
    p1, p2 = 0.1, 0.105
    d = (p2 - p1) / np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)
    plan = plan_sample_size(0.1, 0.05)
    ref_n = nip.solve_power(effect_size=d, alpha=0.05, power=0.8, ratio=1.0)
    assert plan.n_control == int(np.ceil(ref_n - 1e-6))
    mde = minimum_detectable_effect(0.1, ref_n, ref_n)
    assert mde == pytest.approx(0.05, abs=1e-6)


def test_obrien_fleming_boundaries_match_published_values():
    # Lan-DeMets O'Brien-Fleming, 5 equally spaced looks, two-sided alpha 0.05
    # (DeMets & Lan 1994; also gsDesign / ldbounds): 4.877 3.357 2.680 2.290 2.031
    got = obf_boundaries([0.2, 0.4, 0.6, 0.8, 1.0])
    assert got == pytest.approx([4.877, 3.357, 2.680, 2.290, 2.031], abs=1e-3)
    res = sequential_test([1.0, 2.5, 3.0, 2.0, 2.1], [0.2, 0.4, 0.6, 0.8, 1.0])
    assert res.rejected and res.first_crossing == 2
    with pytest.raises(ValueError, match="increasing"):
        obf_boundaries([0.5, 0.5])


def test_poisson_bootstrap_agrees_with_welch_at_scale_and_is_seeded(arms):
    a, b = arms
    boot = poisson_bootstrap(a, b, n_boot=2000, seed=1)
    welch = welch_ttest(MeanStats.of(a), MeanStats.of(b))
    width = welch.ci_high - welch.ci_low
    assert boot.diff_ci_low == pytest.approx(welch.ci_low, abs=0.1 * width)
    assert boot.diff_ci_high == pytest.approx(welch.ci_high, abs=0.1 * width)
    assert boot.lift_ci_low == pytest.approx(welch.lift_ci_low, abs=0.15 * width / a.mean())
    assert poisson_bootstrap(a, b, n_boot=2000, seed=1) == boot


def test_bootstrap_percentiles_match_numpy_and_keep_infinite_lifts():
    rng = np.random.default_rng(3)
    x = rng.normal(size=999)
    assert percentiles(x, (0.025, 0.975)) == tuple(np.quantile(x, [0.025, 0.975]))
    lifts = np.concatenate([rng.normal(size=90), np.full(10, np.inf), [np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = percentiles(lifts, (0.025, 0.975))
        # 10 of 100 replicates have no control likes: the upper end is unbounded
        assert np.isfinite(lo) and hi == np.inf
        assert percentiles(-lifts, (0.025, 0.975))[0] == -np.inf
        assert np.isnan(percentiles(np.array([-np.inf, np.inf]), (0.5,))[0])  # undefined
