"""Every p-value and CI of analysis.stats against scipy/statsmodels on the raw per-user values."""

from __future__ import annotations

import numpy as np
import pytest
from feedlab.analysis.stats.bootstrap import poisson_bootstrap
from feedlab.analysis.stats.frequentist import (
    cuped_welch,
    mann_whitney,
    ratio_ztest,
    two_proportion_ztest,
    welch_ttest,
)
from feedlab.analysis.stats.moments import JointStats, MeanStats
from feedlab.analysis.stats.multiple import holm
from feedlab.analysis.stats.power import minimum_detectable_effect, plan_sample_size, power_for
from feedlab.analysis.stats.sequential import obf_boundaries, sequential_test
from feedlab.analysis.stats.srm import srm_test
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

TOL = 1e-6


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


def test_relative_lift_ci_is_the_delta_method(arms):
    a, b = arms
    res = welch_ttest(MeanStats.of(a), MeanStats.of(b))
    ma, mb = a.mean(), b.mean()
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = np.sqrt(vb / ma**2 + mb**2 * va / ma**4)
    assert res.lift == pytest.approx(mb / ma - 1, abs=TOL)
    assert res.lift_ci_low == pytest.approx(mb / ma - 1 - stats.norm.ppf(0.975) * se, abs=TOL)
    assert res.lift_ci_high == pytest.approx(mb / ma - 1 + stats.norm.ppf(0.975) * se, abs=TOL)


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
    z, p = proportions_ztest([468, 412], [3100, 3000])
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


def test_cuped_equals_welch_on_adjusted_values():
    rng = np.random.default_rng(11)
    xa, xb = rng.gamma(2, 0.1, 700), rng.gamma(2, 0.1, 720)
    ya = 0.6 * xa + rng.normal(0, 0.05, 700)
    yb = 0.6 * xb + 0.01 + rng.normal(0, 0.05, 720)
    res, theta = cuped_welch(JointStats.of(ya, xa), JointStats.of(yb, xb))
    x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
    ref_theta = np.cov(y, x, ddof=1)[0, 1] / x.var(ddof=1)
    adj_a, adj_b = ya - ref_theta * (xa - x.mean()), yb - ref_theta * (xb - x.mean())
    ref = stats.ttest_ind(adj_b, adj_a, equal_var=False)
    ci = ref.confidence_interval(0.95)
    plain = welch_ttest(MeanStats.of(ya), MeanStats.of(yb))
    assert theta == pytest.approx(ref_theta, abs=TOL)
    assert res.p_value == pytest.approx(ref.pvalue, abs=TOL)
    assert (res.ci_low, res.ci_high) == pytest.approx((ci.low, ci.high), abs=TOL)
    assert res.ci_high - res.ci_low < 0.5 * (plain.ci_high - plain.ci_low)  # variance reduced


def test_holm_matches_statsmodels():
    p = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04]
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1].tolist(), abs=TOL)


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
    assert boot.lift_ci_low == pytest.approx(welch.lift_ci_low, abs=0.1 * width / a.mean())
    assert poisson_bootstrap(a, b, n_boot=2000, seed=1) == boot
