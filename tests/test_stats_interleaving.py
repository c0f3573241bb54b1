"""Interleaving statistics: reference values against scipy, the position-balance check, the
power formula, and A/A calibration over 2,000 simulated experiments (vectorised numpy, teams
drawn from the real team-draft merge of two copies of one ranking)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from feedlab.analysis.stats.interleaving import (
    delta_ttest,
    position_balance,
    preference,
    sign_test,
    users_needed,
)
from feedlab.analysis.stats.power import power_of
from feedlab.gateway.interleaving import team_draft
from scipy import stats

RUNS = 2_000
USERS, REQUESTS, LIMIT = 300, 9, 5
BAND = (0.035, 0.065)
POSITION_BIAS = np.array([1.0, 0.8, 0.65, 0.55, 0.5])


def test_preference_matches_scipy_references() -> None:
    rng = np.random.default_rng(3)
    control = rng.poisson(1.0, 400).astype(float)
    test = rng.poisson(1.2, 400).astype(float)
    pref = preference(control, test, n_boot=2000)
    d = test - control
    t = stats.ttest_1samp(d, 0.0)
    assert pref.t_p == pytest.approx(t.pvalue, rel=1e-9)
    lo, hi = t.confidence_interval(0.95)
    assert (pref.delta_ci_low, pref.delta_ci_high) == pytest.approx((lo, hi), rel=1e-9)
    assert pref.wins == int((d > 0).sum()) and pref.losses == int((d < 0).sum())
    assert pref.wins + pref.ties + pref.losses == pref.users == 400
    b = stats.binomtest(pref.wins, pref.wins + pref.losses)
    assert pref.sign_p == pytest.approx(b.pvalue)
    assert pref.share == pytest.approx(pref.wins / (pref.wins + pref.losses))
    ci = b.proportion_ci(0.95, method="exact")
    assert (pref.share_ci_low, pref.share_ci_high) == pytest.approx((ci.low, ci.high))
    for wins, losses in ((0, 7), (7, 0), (3, 3), (1, 30)):
        ref = stats.binomtest(wins, wins + losses)
        ref_ci = ref.proportion_ci(0.95, method="exact")
        assert sign_test(wins, losses)[1:] == pytest.approx((ref_ci.low, ref_ci.high, ref.pvalue))
    # the bootstrap CI of a mean of 400 values is close to the t interval
    assert pref.boot_ci_low == pytest.approx(lo, abs=0.05)
    assert pref.boot_ci_high == pytest.approx(hi, abs=0.05)
    assert pref.winner == ("test" if pref.significant and pref.delta > 0 else pref.winner)


def test_a_clear_preference_is_significant_and_names_the_arm() -> None:
    rng = np.random.default_rng(4)
    control = rng.poisson(1.0, 500).astype(float)
    pref = preference(control, control + rng.binomial(1, 0.3, 500))
    assert pref.significant and pref.winner == "test" and pref.losses == 0
    pref = preference(control + rng.binomial(1, 0.3, 500), control)
    assert pref.winner == "control"


def test_degenerate_samples_do_not_crash() -> None:
    zeros = np.zeros(10)
    pref = preference(zeros, zeros)
    assert (pref.ties, pref.significant, pref.winner, pref.sign_p) == (10, False, None, 1.0)
    assert math.isnan(pref.share)
    assert sign_test(0, 0)[3] == 1.0
    assert delta_ttest(np.array([1.0]))[4] == 1.0


def test_position_balance_flags_a_skewed_rank() -> None:
    rows = position_balance(np.array([500, 505, 700]), np.array([500, 495, 300]))
    assert [r.flagged for r in rows] == [False, False, True]
    assert rows[2].test_share == pytest.approx(0.3)


def test_users_needed_gives_the_planned_power() -> None:
    n = users_needed(delta_sd=1.3, delta=0.1)
    assert power_of(0.1, 1.3 / math.sqrt(n)) >= 0.8 > power_of(0.1, 1.3 / math.sqrt(n - 2))
    with pytest.raises(ValueError):
        users_needed(1.0, 0.0)


def team_patterns() -> np.ndarray:
    """Team of each rank for many coin seeds, from the real merge of two copies of a ranking."""
    ranking = list(range(LIMIT))
    return np.array([team_draft(ranking, ranking, LIMIT, seed).teams for seed in range(4096)])


def simulated_credits(
    rng: np.random.Generator, runs: int, patterns: np.ndarray, test_lift: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per (run, user) likes credited to control and test: users differ a lot in how much they
    like (gamma propensity), ranks by position bias; `test_lift` raises the like probability
    of test's posts (0 = both arms the same ranking, an A/A test)."""
    propensity = rng.gamma(0.8, 0.08 / 0.8, size=(runs, USERS, 1, 1))
    teams = patterns[rng.integers(0, len(patterns), size=(runs, USERS, REQUESTS))]
    p = np.minimum(propensity * POSITION_BIAS * (1 + test_lift * teams), 1.0)
    likes = rng.random(p.shape) < p
    test = (likes & (teams == 1)).sum(axis=(2, 3))
    control = (likes & (teams == 0)).sum(axis=(2, 3))
    return control.astype(float), test.astype(float)


def test_aa_interleaving_false_positive_rate_is_nominal() -> None:
    rng = np.random.default_rng(7)
    patterns = team_patterns()
    assert set(np.unique(patterns.sum(axis=1))) <= {2, 3}, "teams split 2/3 or 3/2 of 5 ranks"
    t_rej, sign_rej = [], []
    for start in range(0, RUNS, 250):
        control, test = simulated_credits(rng, min(250, RUNS - start), patterns)
        for c, t in zip(control, test, strict=True):
            d = t - c
            t_rej.append(delta_ttest(d)[4] < 0.05)
            sign_rej.append(sign_test(int((d > 0).sum()), int((d < 0).sum()))[3] < 0.05)
    t_rate, sign_rate = float(np.mean(t_rej)), float(np.mean(sign_rej))
    print(f"A/A interleaving over {len(t_rej)} runs: t-test FPR {t_rate:.4f}, sign {sign_rate:.4f}")
    assert len(t_rej) >= 1_000
    assert BAND[0] <= t_rate <= BAND[1]
    assert BAND[0] <= sign_rate <= BAND[1]


def test_a_planted_preference_is_found_at_the_planned_size() -> None:
    """Plan users from a pilot's delta sd, then check the power at that size by simulation."""
    rng = np.random.default_rng(8)
    patterns = team_patterns()
    control, test = simulated_credits(rng, 1, patterns, test_lift=0.15)
    pilot = test[0] - control[0]
    control, test = simulated_credits(rng, 400, patterns, test_lift=0.15)
    d = test - control
    true_delta = float(d.mean())  # over 120,000 simulated users
    n = users_needed(float(pilot.std(ddof=1)), true_delta)
    hits = [
        delta_ttest(row[:n])[4] < 0.05
        for row in (d.reshape(-1)[: (d.size // n) * n].reshape(-1, n))
    ]
    power = float(np.mean(hits))
    print(f"planned {n} users; simulated power {power:.2f} over {len(hits)} experiments")
    assert 0.65 <= power <= 0.95
