"""A/A calibration and power, simulated with seeded vectorised numpy so it takes seconds.

Each test runs >= 1,000 experiments without a true effect and checks its false-positive rate
at alpha 0.05 lies in [0.035, 0.065]; the planted-effect test checks the plan's power."""

from __future__ import annotations

import numpy as np
import pytest
from feedlab.analysis.stats.bootstrap import poisson_bootstrap
from feedlab.analysis.stats.frequentist import (
    cuped_test,
    mann_whitney,
    ratio_ztest,
    two_proportion_ztest,
    welch_ttest,
)
from feedlab.analysis.stats.moments import JointStats, MeanStats, RegressionStats
from feedlab.analysis.stats.power import plan_sample_size
from feedlab.analysis.stats.sequential import sequential_test
from feedlab.analysis.stats.srm import srm_test
from scipy import stats

RUNS = 2_000  # >= 1,000 as required; 2,000 halves the Monte Carlo noise on the band
BOOT_RUNS = 1_000
ALPHA = 0.05
BAND = (0.035, 0.065)


def _rate(rejections: list[bool]) -> float:
    assert len(rejections) >= 1_000
    rate = float(np.mean(rejections))
    print(f"false-positive rate over {len(rejections)} A/A runs: {rate:.3f}")
    return rate


def _per_user(rng, runs: int, n: int) -> np.ndarray:
    """Skewed per-user HitRate-like values: hits / exposures with user-level propensity."""
    exposures = rng.integers(1, 8, size=(runs, n))
    p = rng.beta(2, 8, size=(runs, n))
    return rng.binomial(exposures, p) / exposures


def test_welch_aa_false_positive_rate():
    rng = np.random.default_rng(1)
    a, b = _per_user(rng, RUNS, 400), _per_user(rng, RUNS, 400)
    rej = [welch_ttest(MeanStats.of(a[i]), MeanStats.of(b[i])).p_value < ALPHA for i in range(RUNS)]
    assert BAND[0] <= _rate(rej) <= BAND[1]


def test_mann_whitney_aa_false_positive_rate():
    rng = np.random.default_rng(2)
    a, b = _per_user(rng, RUNS, 300), _per_user(rng, RUNS, 300)
    pooled = np.concatenate([a, b], axis=1)
    ranks = stats.rankdata(pooled, axis=1)
    rej = []
    for i in range(RUNS):
        _, counts = np.unique(pooled[i], return_counts=True)
        ties = float((counts.astype(float) ** 3 - counts).sum())
        res = mann_whitney(300, 300, ranks[i, :300].sum(), ties, a[i].mean(), b[i].mean())
        rej.append(res.p_value < ALPHA)
    assert BAND[0] <= _rate(rej) <= BAND[1]


def test_two_proportion_ztest_aa_false_positive_rate():
    rng = np.random.default_rng(3)
    xa, xb = rng.binomial(5_000, 0.1, RUNS), rng.binomial(5_000, 0.1, RUNS)
    rej = [two_proportion_ztest(xa[i], 5_000, xb[i], 5_000).p_value < ALPHA for i in range(RUNS)]
    assert BAND[0] <= _rate(rej) <= BAND[1]


def test_ratio_delta_method_aa_false_positive_rate():
    rng = np.random.default_rng(4)
    den = rng.integers(1, 12, size=(2, RUNS, 500)) * 5
    num = rng.binomial(den, rng.beta(1, 20, size=(2, RUNS, 500)))
    rej = [
        ratio_ztest(
            JointStats.of(num[0, i], den[0, i]), JointStats.of(num[1, i], den[1, i])
        ).p_value
        < ALPHA
        for i in range(RUNS)
    ]
    assert BAND[0] <= _rate(rej) <= BAND[1]


def test_cuped_aa_false_positive_rate():
    rng = np.random.default_rng(5)
    x = rng.gamma(2, 0.1, size=(2, RUNS, 400))
    y = 0.7 * x + rng.normal(0, 0.05, size=x.shape)
    rej = [
        cuped_test(
            RegressionStats.of(y[0, i], x[0, i]), RegressionStats.of(y[1, i], x[1, i])
        ).result.p_value
        < ALPHA
        for i in range(RUNS)
    ]
    assert BAND[0] <= _rate(rej) <= BAND[1]


@pytest.mark.slow
def test_poisson_bootstrap_aa_false_positive_rate():
    rng = np.random.default_rng(6)
    a, b = _per_user(rng, BOOT_RUNS, 200), _per_user(rng, BOOT_RUNS, 200)
    rej = []
    for i in range(BOOT_RUNS):
        ci = poisson_bootstrap(a[i], b[i], n_boot=200, seed=i)
        rej.append(ci.diff_ci_low > 0 or ci.diff_ci_high < 0)
    assert BAND[0] <= _rate(rej) <= BAND[1]


def test_srm_chi_square_aa_false_positive_rate():
    rng = np.random.default_rng(7)
    counts = rng.multinomial(20_000, [0.5, 0.3, 0.2], size=RUNS)
    weights = {"a": 50, "b": 30, "c": 20}
    rej = [
        srm_test(dict(zip(weights, c, strict=True)), weights, threshold=ALPHA).flagged
        for c in counts
    ]
    assert BAND[0] <= _rate(rej) <= BAND[1]


def _peeks(rng, runs: int, n: int, looks: int):
    """Welch z statistics at `looks` equally spaced interim sizes per experiment (vectorised;
    the same statistic welch_ttest computes, checked on the last look)."""
    a, b = _per_user(rng, runs, n), _per_user(rng, runs, n)
    cuts = np.linspace(n / looks, n, looks).astype(int)
    z = np.empty((runs, looks))
    for k, m in enumerate(cuts):
        va = a[:, :m].var(axis=1, ddof=1) / m
        vb = b[:, :m].var(axis=1, ddof=1) / m
        z[:, k] = (b[:, :m].mean(axis=1) - a[:, :m].mean(axis=1)) / np.sqrt(va + vb)
    last = welch_ttest(MeanStats.of(a[0]), MeanStats.of(b[0])).statistic
    assert z[0, -1] == pytest.approx(last, rel=1e-9)
    return z, cuts / n


def test_sequential_test_holds_alpha_under_ten_peeks_while_naive_peeking_does_not():
    rng = np.random.default_rng(8)
    z, fractions = _peeks(rng, RUNS, 1_000, 10)
    rej = [sequential_test(list(z[i]), list(fractions)).rejected for i in range(RUNS)]
    naive = np.mean((np.abs(z) >= stats.norm.ppf(1 - ALPHA / 2)).any(axis=1))
    print(f"naive peeking (10 looks, |z| >= 1.96 at any look): {naive:.3f}")
    assert BAND[0] <= _rate(rej) <= BAND[1]
    assert naive > 0.12  # the inflation the sequential test exists to prevent


def test_planted_effect_is_detected_at_the_planned_power():
    plan = plan_sample_size(baseline=0.1, mde=0.05, power=0.8)
    rng = np.random.default_rng(9)
    xa = rng.binomial(plan.n_control, 0.1, 2_000)
    xb = rng.binomial(plan.n_test, 0.1 * 1.05, 2_000)
    hits = [
        two_proportion_ztest(xa[i], plan.n_control, xb[i], plan.n_test).p_value < ALPHA
        for i in range(2_000)
    ]
    print(f"planned power {plan.power:.2f}, observed {np.mean(hits):.3f} (n={plan.n_control}/arm)")
    assert np.mean(hits) == pytest.approx(plan.power, abs=0.05)


def test_planted_effect_on_a_mean_metric_is_detected_at_the_planned_power():
    """Exact simulation of sufficient statistics: sample mean ~ Normal, (n-1) s^2 ~ chi2."""
    mean, sd = 0.2, 0.25
    plan = plan_sample_size(baseline=mean, mde=0.05, power=0.8, sd=sd)
    rng = np.random.default_rng(10)
    hits = []
    for true_mean, n in ((mean, plan.n_control), (mean * 1.05, plan.n_test)):
        m = rng.normal(true_mean, sd / np.sqrt(n), 2_000)
        v = sd**2 * rng.chisquare(n - 1, 2_000) / (n - 1)
        hits.append(
            [MeanStats(n, mi * n, (n - 1) * vi + n * mi**2) for mi, vi in zip(m, v, strict=True)]
        )
    rejected = [welch_ttest(a, b).p_value < ALPHA for a, b in zip(*hits, strict=True)]
    print(f"planned power {plan.power:.2f}, observed {np.mean(rejected):.3f} (mean metric)")
    assert np.mean(rejected) == pytest.approx(plan.power, abs=0.05)
