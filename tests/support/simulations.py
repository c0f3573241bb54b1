"""Monte Carlo checks of the analysis' decisions, seeded and vectorised over runs: the tests run
them at a size that keeps the suite fast, `benchmarks/analysis_decisions.py` at full size.

Every check goes through the product's own statistics (`analysis.stats`), fed with per-user
values or exact sufficient statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from feedlab.analysis.stats.frequentist import (
    cuped_test,
    ratio_ztest,
    two_proportion_ztest,
    welch_ttest,
)
from feedlab.analysis.stats.moments import JointStats, MeanStats, RegressionStats
from feedlab.analysis.stats.multiple import adjust_families
from feedlab.analysis.stats.power import plan_sample_size
from feedlab.analysis.stats.sequential import cs_half_width

ALPHA = 0.05


def _hit_rates(rng: np.random.Generator, propensity: np.ndarray, base: float) -> np.ndarray:
    """Per-user HitRate over 6 exposures with a like probability base * propensity."""
    return rng.binomial(6, np.minimum(base * propensity, 1.0)) / 6


def two_phase_cuped_fpr(runs: int, users: int, seed: int, covariate: str) -> float:
    """Phase 1: the test arm likes 30% more; phase 2: no effect, same users and arms (a traffic
    change with the same salt). CUPED's false-positive rate in phase 2 with the covariate from
    `covariate`: "phase1" (the window before phase 2 starts: the old rule, which carries
    phase 1's effect) or "pre" (before the experiment's first exposure: the rule now)."""
    rng = np.random.default_rng(seed)
    rejected = 0
    for _ in range(runs):
        tests = []
        for lift in (0.0, 0.3):  # control, test in phase 1
            propensity = rng.gamma(4.0, 0.25, users)
            pre = _hit_rates(rng, propensity, 0.2)
            phase1 = _hit_rates(rng, propensity * (1 + lift), 0.2)
            phase2 = _hit_rates(rng, propensity, 0.2)
            x = pre if covariate == "pre" else phase1
            tests.append(RegressionStats.of(phase2, x))
        control, test = tests
        res = cuped_test(control, test, ALPHA)
        rejected += bool(res.result is not None and res.result.p_value < ALPHA)
    return rejected / runs


@dataclass(frozen=True)
class VerdictPower:
    planned_users_per_arm: int
    power: float
    aa_false_positive_rate: float


def verdict_power(runs: int, seed: int, mean: float = 0.3, sd: float = 0.25, mde: float = 0.05):
    """The verdict (Welch on the decision metric, adjusted by `adjust_families` beside four
    secondary metrics) at the sample size `--plan` gives for 80% power; exact sufficient
    statistics (sample mean normal, (n-1) s^2 / sigma^2 chi-square)."""
    plan = plan_sample_size(baseline=mean, mde=mde, power=0.8, sd=sd)
    n = plan.n_control
    rng = np.random.default_rng(seed)

    def stats_of(true_mean: float) -> list[MeanStats]:
        m = rng.normal(true_mean, sd / np.sqrt(n), runs)
        v = sd**2 * rng.chisquare(n - 1, runs) / (n - 1)
        return [MeanStats(n, mi * n, (n - 1) * vi + n * mi**2) for mi, vi in zip(m, v, strict=True)]

    def verdicts(lift: float) -> float:
        control, test = stats_of(mean), stats_of(mean * (1 + lift))
        wins = 0
        for a, b in zip(control, test, strict=True):
            p = welch_ttest(a, b, ALPHA).p_value
            secondary = list(rng.uniform(0, 1, 4))  # any secondaries: they must not matter
            (p_decision,), _ = adjust_families([p], secondary)
            wins += p_decision < ALPHA
        return wins / runs

    return VerdictPower(n, verdicts(mde), verdicts(0.0))


@dataclass(frozen=True)
class Agreement:
    cases: int
    diff_disagreements: int
    lift_disagreements: int
    rejections: int


def ci_agreement(cases: int, seed: int, kind: str) -> Agreement:
    """Random small-n cases: does "CI excludes 0" agree with "p < alpha", for the difference
    CI and the lift's confidence set? kind: welch | ztest | ratio."""
    rng = np.random.default_rng(seed)
    diff_bad = lift_bad = rejections = 0
    for _ in range(cases):
        na, nb = rng.integers(2, 40, 2)
        if kind == "welch":
            scale = rng.choice([0.01, 1.0, 100.0])
            a = rng.exponential(scale, na) * rng.integers(0, 2, na)
            b = rng.exponential(scale * rng.uniform(0.3, 3), nb) * rng.integers(0, 2, nb)
            res = welch_ttest(MeanStats.of(a), MeanStats.of(b), ALPHA)
        elif kind == "ztest":
            na, nb = rng.integers(5, 300, 2)
            res = two_proportion_ztest(
                rng.binomial(na, rng.uniform(0.01, 0.6)),
                na,
                rng.binomial(nb, rng.uniform(0.01, 0.6)),
                nb,
                ALPHA,
            )
        else:
            den = [rng.integers(1, 20, n).astype(float) for n in (na, nb)]
            num = [rng.binomial(d.astype(int), rng.uniform(0.02, 0.5)).astype(float) for d in den]
            res = ratio_ztest(JointStats.of(num[0], den[0]), JointStats.of(num[1], den[1]), ALPHA)
        if res.method == "welch" and not np.isfinite(res.statistic):
            continue
        significant = res.p_value < ALPHA
        rejections += significant
        diff_bad += significant != (res.ci_low > 0 or res.ci_high < 0)
        if np.isfinite(res.lift) or res.lift_ci_kind != "unbounded":
            lift_bad += significant != res.lift_ci_excludes(0.0)
    return Agreement(cases, diff_bad, lift_bad, rejections)


@dataclass(frozen=True)
class Anytime:
    runs: int
    looks: int
    rejection_rate: float
    median_users_to_rejection: float | None
    fixed_horizon_users: int


def anytime_looks(runs: int, looks: int, seed: int, lift: float, horizon_factor: float = 4.0):
    """The asymptotic confidence sequence checked at `looks` equally spaced looks up to
    horizon_factor x the fixed-horizon size (80% power for +5% on a mean 0.3, sd 0.25):
    how often it ever excludes 0, and at how many users (both arms) it first does."""
    mean, sd = 0.3, 0.25
    plan = plan_sample_size(baseline=mean, mde=0.05, power=0.8, sd=sd)
    n_max = int(plan.n_control * horizon_factor)
    cuts = np.linspace(n_max / looks, n_max, looks).astype(int)
    rng = np.random.default_rng(seed)
    first = np.full(runs, -1)
    chunk = 100
    for start in range(0, runs, chunk):
        r = min(chunk, runs - start)
        a = np.clip(rng.normal(mean, sd, (r, n_max)), 0, None)
        b = np.clip(rng.normal(mean * (1 + lift), sd, (r, n_max)), 0, None)
        ca, cb = np.cumsum(a, axis=1), np.cumsum(b, axis=1)
        qa, qb = np.cumsum(a * a, axis=1), np.cumsum(b * b, axis=1)
        k = cuts - 1
        ma, mb = ca[:, k] / cuts, cb[:, k] / cuts
        va = (qa[:, k] - cuts * ma**2) / (cuts - 1)
        vb = (qb[:, k] - cuts * mb**2) / (cuts - 1)
        se = np.sqrt(va / cuts + vb / cuts)
        half = cs_half_width(se, 2 * cuts, ALPHA)
        hit = np.abs(mb - ma) > half
        any_hit = hit.any(axis=1)
        first[start : start + r] = np.where(any_hit, 2 * cuts[np.argmax(hit, axis=1)], -1)
    rejected = first > 0
    median = float(np.median(first[rejected])) if rejected.any() else None
    return Anytime(runs, looks, float(rejected.mean()), median, plan.n_total)
