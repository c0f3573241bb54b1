"""Sample size, power and minimum detectable effect for a planned two-arm experiment, with the
same normal approximation the analysis uses (two-sided, both tails counted)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import optimize, stats


def power_of(delta: float, se: float, alpha: float = 0.05) -> float:
    """Two-sided power of a z-test when the true difference is delta and its SE is se."""
    z = stats.norm.ppf(1 - alpha / 2)
    return float(stats.norm.cdf(delta / se - z) + stats.norm.cdf(-delta / se - z))


def _variances(baseline: float, mde: float, sd: float | None) -> tuple[float, float, float]:
    """(unit variance control, unit variance test, absolute delta) for a relative mde."""
    treated = baseline * (1 + mde)
    if sd is None:
        if not 0 < baseline < 1 or not 0 < treated < 1:
            raise ValueError("baseline: a proportion needs 0 < baseline*(1+mde) < 1")
        return baseline * (1 - baseline), treated * (1 - treated), treated - baseline
    return sd * sd, sd * sd, treated - baseline


def power_for(
    baseline: float,
    mde: float,
    n_control: float,
    n_test: float,
    alpha: float = 0.05,
    sd: float | None = None,
) -> float:
    """Power to detect a relative effect `mde` on a proportion (sd=None) or a mean with sd."""
    va, vb, delta = _variances(baseline, mde, sd)
    return power_of(abs(delta), math.sqrt(va / n_control + vb / n_test), alpha)


@dataclass(frozen=True)
class Plan:
    baseline: float
    sd: float | None
    mde: float
    alpha: float
    power: float
    test_share: float
    n_control: int
    n_test: int
    n_total: int
    days: float | None


def plan_sample_size(
    baseline: float,
    mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
    test_share: float = 0.5,
    sd: float | None = None,
    daily_users: float | None = None,
) -> Plan:
    """Users needed so a relative effect `mde` is detected with probability `power`."""
    if not 0 < test_share < 1:
        raise ValueError("test_share must be in (0, 1)")
    if not 0 < power < 1 or not 0 < alpha < 1:
        raise ValueError("alpha and power must be in (0, 1)")

    def gap(total: float) -> float:
        return (
            power_for(baseline, mde, total * (1 - test_share), total * test_share, alpha, sd)
            - power
        )

    hi = 100.0
    while gap(hi) < 0:
        hi *= 2
        if hi > 1e13:
            raise ValueError("mde too small for any realistic sample size")
    total = optimize.brentq(gap, 2.0, hi, xtol=1e-6)
    n_c = math.ceil(total * (1 - test_share))
    n_t = math.ceil(total * test_share)
    days = (n_c + n_t) / daily_users if daily_users else None
    return Plan(baseline, sd, mde, alpha, power, test_share, n_c, n_t, n_c + n_t, days)


def minimum_detectable_effect(
    baseline: float,
    n_control: float,
    n_test: float,
    alpha: float = 0.05,
    power: float = 0.8,
    sd: float | None = None,
) -> float:
    """Smallest positive relative effect detected with probability `power` at these sizes."""
    upper = (1 / baseline - 1) * 0.999999 if sd is None else 1e6
    return float(
        optimize.brentq(
            lambda m: power_for(baseline, m, n_control, n_test, alpha, sd) - power,
            1e-9,
            upper,
            xtol=1e-12,
        )
    )
