"""The decisions the report makes, simulated (seeded, vectorised; full-size tables in
`benchmarks/analysis_decisions.py`): CUPED's pre-period across phases, the verdict's power at
the planned size, CIs that agree with their p-values, anytime-valid looks."""

from __future__ import annotations

import pytest

from tests.support.simulations import (
    anytime_looks,
    ci_agreement,
    two_phase_cuped_fpr,
    verdict_power,
)

BAND = (0.035, 0.065)


def test_cuped_from_before_the_first_exposure_keeps_its_false_positive_rate():
    old = two_phase_cuped_fpr(runs=300, users=300, seed=1, covariate="phase1")
    new = two_phase_cuped_fpr(runs=1_000, users=300, seed=2, covariate="pre")
    print(
        f"phase-2 CUPED false-positive rate: covariate from phase 1 {old:.3f}, pre-period {new:.3f}"
    )
    assert old > 0.15  # the bug: the covariate carries phase 1's effect
    assert BAND[0] <= new <= BAND[1]


def test_verdict_has_the_planned_power_and_full_alpha():
    res = verdict_power(runs=2_000, seed=3)
    print(res)
    assert res.power == pytest.approx(0.80, abs=0.04)
    assert BAND[0] <= res.aa_false_positive_rate <= BAND[1]


@pytest.mark.parametrize("kind", ["welch", "ztest", "ratio"])
def test_ci_excludes_zero_exactly_when_p_is_below_alpha(kind):
    res = ci_agreement(cases=10_000, seed=4, kind=kind)
    print(res)
    assert res.rejections > 300  # the cases exercise both sides of the boundary
    assert res.diff_disagreements == 0
    assert res.lift_disagreements == 0


def test_anytime_confidence_sequence_holds_alpha_over_50_looks_and_finds_a_lift():
    aa = anytime_looks(runs=1_000, looks=50, seed=5, lift=0.0)
    print(aa)
    assert aa.rejection_rate <= 0.055
    ab = anytime_looks(runs=200, looks=50, seed=6, lift=0.05)
    ratio = ab.median_users_to_rejection / ab.fixed_horizon_users
    print(ab, f"median users to rejection / fixed horizon: {ratio:.2f}")
    assert ab.rejection_rate > 0.8
