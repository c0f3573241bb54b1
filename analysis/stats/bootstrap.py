"""Poisson bootstrap CIs: each user gets a Poisson(1) weight per replicate, so replicates are
accumulated chunk by chunk (streamable, no resampling index over all users)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BootstrapResult:
    n_boot: int
    diff_ci_low: float
    diff_ci_high: float
    lift_ci_low: float
    lift_ci_high: float


def _weighted_sums(
    num: np.ndarray, den: np.ndarray, n_boot: int, rng: np.random.Generator, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    s_num = np.zeros(n_boot)
    s_den = np.zeros(n_boot)
    for start in range(0, num.size, chunk):
        w = rng.poisson(1.0, size=(n_boot, min(chunk, num.size - start))).astype(np.float64)
        s_num += w @ num[start : start + chunk]
        s_den += w @ den[start : start + chunk]
    return s_num, s_den


def poisson_bootstrap(
    num_a: np.ndarray,
    num_b: np.ndarray,
    den_a: np.ndarray | None = None,
    den_b: np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    chunk: int = 4096,
) -> BootstrapResult:
    """Percentile CIs of (test - control) and (test / control - 1) for a mean (no denominators)
    or a ratio of sums (per-user numerators and denominators)."""
    rng = np.random.default_rng(seed)
    num_a = np.asarray(num_a, dtype=float)
    num_b = np.asarray(num_b, dtype=float)
    den_a = np.ones_like(num_a) if den_a is None else np.asarray(den_a, dtype=float)
    den_b = np.ones_like(num_b) if den_b is None else np.asarray(den_b, dtype=float)
    na, da = _weighted_sums(num_a, den_a, n_boot, rng, chunk)
    nb, db = _weighted_sums(num_b, den_b, n_boot, rng, chunk)
    with np.errstate(divide="ignore", invalid="ignore"):
        ra, rb = na / da, nb / db
        diff, lift = rb - ra, rb / ra - 1
    q = (alpha / 2, 1 - alpha / 2)
    d_lo, d_hi = percentiles(diff, q)
    l_lo, l_hi = percentiles(lift, q) if np.isfinite(lift).any() else (np.nan, np.nan)
    return BootstrapResult(n_boot, float(d_lo), float(d_hi), float(l_lo), float(l_hi))


def bootstrap_mean_ci(
    x: np.ndarray, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, chunk: int = 4096
) -> tuple[float, float]:
    """Percentile CI of the mean of one sample (e.g. paired per-user differences)."""
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan")
    sums, counts = _weighted_sums(x, np.ones_like(x), n_boot, np.random.default_rng(seed), chunk)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = sums / counts
    lo, hi = percentiles(means, (alpha / 2, 1 - alpha / 2))
    return float(lo), float(hi)


def percentiles(x: np.ndarray, q: tuple[float, ...]) -> tuple[float, ...]:
    """Linear-interpolation quantiles (numpy's default) of the non-NaN values of `x`, read on
    the extended reals: a replicate whose control mean is 0 has an infinite lift, a real
    outcome that the interval must keep, and interpolating between two equal infinities is
    that infinity (numpy's `inf - inf` gives NaN and a warning instead)."""
    v = np.sort(x[~np.isnan(x)])
    if v.size == 0:
        return tuple(float("nan") for _ in q)
    out = []
    for level in q:
        h = (v.size - 1) * level
        lo, hi = v[int(np.floor(h))], v[int(np.ceil(h))]
        if np.isfinite(lo) and np.isfinite(hi):
            out.append(float(np.quantile(v, level)))
        elif lo == hi or h == np.floor(h):
            out.append(float(lo))
        elif np.isneginf(lo) and np.isposinf(hi):
            out.append(float("nan"))
        else:  # one finite neighbour: the interpolation runs to the infinite one
            out.append(float(hi if np.isinf(hi) else lo))
    return tuple(out)
