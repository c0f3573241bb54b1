"""Statistics of an interleaving experiment, over per-user credits (likes on the posts each arm
contributed). The comparison is within each user, so the between-user spread of engagement that
makes A/B tests of rankers large cancels out of every statistic here.

- preference: users whose test credit beats control's ("wins"), ties, losses; the share of
  users with a winner who prefer test, with its Clopper-Pearson CI and an exact sign test.
- delta: the mean per-user difference test - control, with a t-test and CI and a Poisson
  bootstrap CI. The t-test on delta is the verdict: it uses every credited like, where the sign
  test throws away how much a user prefers an arm.
- position balance: team draft gives each arm half of every rank of its complete rounds in
  expectation (the caller passes counts from complete rounds only); an arm that contributes
  significantly more at some rank means the merge or the logging is broken.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from feedlab.analysis.stats.bootstrap import bootstrap_mean_ci
from feedlab.analysis.stats.srm import SRM_ALPHA
from scipy import stats


@dataclass(frozen=True)
class Preference:
    users: int
    wins: int
    ties: int
    losses: int
    share: float
    share_ci_low: float
    share_ci_high: float
    sign_p: float
    delta: float
    delta_sd: float
    delta_ci_low: float
    delta_ci_high: float
    t_p: float
    boot_ci_low: float
    boot_ci_high: float
    significant: bool
    winner: str | None
    """'test', 'control', or None when the t-test on delta is not significant."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sign_test(wins: int, losses: int, alpha: float = 0.05) -> tuple[float, float, float, float]:
    """(share preferring test, Clopper-Pearson CI low, high, two-sided exact binomial p) over
    users with a winner; NaNs when nobody has one. Closed forms (beta quantiles; the binomial
    is symmetric at 1/2), as fast as a t-test."""
    n = wins + losses
    if n == 0:
        return math.nan, math.nan, math.nan, 1.0
    low = stats.beta.ppf(alpha / 2, wins, losses + 1) if wins else 0.0
    high = stats.beta.ppf(1 - alpha / 2, wins + 1, losses) if losses else 1.0
    p = min(1.0, 2 * stats.binom.cdf(min(wins, losses), n, 0.5))
    return wins / n, float(low), float(high), float(p)


def delta_ttest(delta: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float, float, float]:
    """(mean, sd, CI low, CI high, two-sided p) of a one-sample t-test of mean delta = 0."""
    n = delta.size
    if n < 2:
        return (float(delta.mean()) if n else math.nan), math.nan, math.nan, math.nan, 1.0
    mean, sd = float(delta.mean()), float(delta.std(ddof=1))
    if sd == 0:
        return mean, 0.0, mean, mean, 1.0 if mean == 0 else 0.0
    se = sd / math.sqrt(n)
    t = mean / se
    half = stats.t.ppf(1 - alpha / 2, n - 1) * se
    return mean, sd, mean - half, mean + half, float(2 * stats.t.sf(abs(t), n - 1))


def preference(
    control: np.ndarray,
    test: np.ndarray,
    *,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
) -> Preference:
    """Compare per-user credits of the two arms (aligned arrays, one entry per exposed user)."""
    control = np.asarray(control, dtype=float)
    test = np.asarray(test, dtype=float)
    delta = test - control
    wins, losses = int((delta > 0).sum()), int((delta < 0).sum())
    share, s_lo, s_hi, sign_p = sign_test(wins, losses, alpha)
    mean, sd, d_lo, d_hi, t_p = delta_ttest(delta, alpha)
    b_lo, b_hi = bootstrap_mean_ci(delta, n_boot=n_boot, alpha=alpha, seed=seed)
    significant = t_p < alpha
    return Preference(
        users=int(delta.size),
        wins=wins,
        ties=int(delta.size) - wins - losses,
        losses=losses,
        share=share,
        share_ci_low=s_lo,
        share_ci_high=s_hi,
        sign_p=sign_p,
        delta=mean,
        delta_sd=sd,
        delta_ci_low=d_lo,
        delta_ci_high=d_hi,
        t_p=t_p,
        boot_ci_low=b_lo,
        boot_ci_high=b_hi,
        significant=significant,
        winner=("test" if mean > 0 else "control") if significant else None,
    )


@dataclass(frozen=True)
class PositionBalance:
    position: int
    control: int
    test: int
    test_share: float
    share_ci_low: float
    share_ci_high: float
    p_value: float
    flagged: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def position_balance(
    control: np.ndarray, test: np.ndarray, threshold: float = SRM_ALPHA, alpha: float = 0.05
) -> list[PositionBalance]:
    """Per rank, posts contributed by each arm against an even split (exact binomial test),
    flagged at the SRM threshold: like an SRM, an imbalance invalidates the comparison."""
    out = []
    for pos, (c, t) in enumerate(zip(control, test, strict=True)):
        share, low, high, p = sign_test(int(t), int(c), alpha)
        out.append(PositionBalance(pos, int(c), int(t), share, low, high, p, p < threshold))
    return out


def users_needed(delta_sd: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users for a two-sided one-sample test of mean delta to detect `delta` with `power`,
    given the per-user sd of delta (normal approximation, as `stats.power` uses)."""
    if not delta or not math.isfinite(delta) or not delta_sd > 0:
        raise ValueError("delta must be non-zero and delta_sd positive")
    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    return math.ceil((z * delta_sd / abs(delta)) ** 2)
