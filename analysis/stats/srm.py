"""Sample ratio mismatch: users per arm against the configured weights (chi-square)."""

from __future__ import annotations

from dataclasses import dataclass

from scipy import stats

SRM_ALPHA = 0.001


@dataclass(frozen=True)
class SrmResult:
    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    flagged: bool


def srm_test(
    observed: dict[str, int], weights: dict[str, float], threshold: float = SRM_ALPHA
) -> SrmResult:
    """Chi-square goodness of fit of the observed arm counts to the configured weights.

    Arms configured but never seen count as 0; a strict threshold (0.001) because an SRM
    invalidates every metric, so a false alarm is expensive too."""
    arms = list(weights)
    counts = [float(observed.get(arm, 0)) for arm in arms]
    total = sum(counts)
    wsum = float(sum(weights.values()))
    expected = [total * weights[arm] / wsum for arm in arms]
    if total == 0:
        return SrmResult({}, {}, float("nan"), 1.0, False)
    chi2, p = stats.chisquare(counts, expected)
    return SrmResult(
        {a: int(c) for a, c in zip(arms, counts, strict=True)},
        dict(zip(arms, expected, strict=True)),
        float(chi2),
        float(p),
        bool(p < threshold),
    )
