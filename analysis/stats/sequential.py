"""Group-sequential test with Lan-DeMets O'Brien-Fleming-type alpha spending.

Peeking at a fixed-horizon test every day inflates false positives; here each look k at
information fraction t_k gets a boundary c_k such that the probability of crossing any
boundary up to t under H0 equals the spent alpha(t) = 4 - 4 Phi(z_{1-alpha/4} / sqrt(t)) (the
two-sided Lan-DeMets form: alpha/2 spent per side with the one-sided O'Brien-Fleming shape).
Boundaries are found by numerical integration of the z-statistic's Brownian path (the
Armitage-McPherson-Rowe recursion), so any number and spacing of looks works."""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, stats

GRID = 801
MAX_BOUNDARY = 40.0

Vector = npt.NDArray[np.float64]


def obf_spending(t: float, alpha: float = 0.05) -> float:
    """Cumulative two-sided alpha spent by information fraction t (0 < t <= 1)."""
    if t <= 0:
        return 0.0
    return float(4 - 4 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 4) / math.sqrt(min(t, 1.0))))


def obf_boundaries(fractions: list[float], alpha: float = 0.05) -> list[float]:
    """Two-sided z boundaries for looks at the given increasing information fractions."""
    return list(_boundaries(tuple(float(x) for x in fractions), float(alpha)))


@functools.lru_cache(maxsize=256)
def _boundaries(t: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    if any(b <= a for a, b in itertools.pairwise(t)) or not t or t[0] <= 0:
        raise ValueError("information fractions must be positive and strictly increasing")
    bounds: list[float] = []
    spent = 0.0
    # continuation density of B(t_{k-1}) on a grid
    grid: Vector | None = None
    density: Vector | None = None
    t_prev = 0.0
    for tk in t:
        target = obf_spending(tk, alpha) - spent
        spent += max(target, 0.0)
        if grid is None or density is None:
            c = float(stats.norm.isf(target / 2)) if target > 0 else MAX_BOUNDARY
            c = min(c, MAX_BOUNDARY)
        else:
            c = _solve_boundary(grid, density, tk, tk - t_prev, target)
        bounds.append(c)
        grid, density = _next_density(grid, density, tk, tk - t_prev, c)
        t_prev = tk
    return tuple(bounds)


def _crossing_prob(grid: Vector, density: Vector, tk: float, dt: float, c: float) -> float:
    edge = c * math.sqrt(tk)
    sd = math.sqrt(dt)
    tail = stats.norm.sf((edge - grid) / sd) + stats.norm.cdf((-edge - grid) / sd)
    return float(np.trapezoid(density * tail, grid))


def _solve_boundary(grid: Vector, density: Vector, tk: float, dt: float, target: float) -> float:
    if target <= 0 or _crossing_prob(grid, density, tk, dt, MAX_BOUNDARY) >= target:
        return MAX_BOUNDARY
    return float(
        optimize.brentq(
            lambda c: _crossing_prob(grid, density, tk, dt, c) - target, 0.0, MAX_BOUNDARY
        )
    )


def _next_density(
    grid: Vector | None, density: Vector | None, tk: float, dt: float, c: float
) -> tuple[Vector, Vector]:
    """Sub-density of B(t_k) on the continuation region |B| < c sqrt(t_k)."""
    edge = min(c, 8.0) * math.sqrt(tk)
    new_grid = np.linspace(-edge, edge, GRID)
    if grid is None or density is None:
        return new_grid, stats.norm.pdf(new_grid, scale=math.sqrt(tk))
    kernel = stats.norm.pdf((new_grid[:, None] - grid[None, :]) / math.sqrt(dt)) / math.sqrt(dt)
    return new_grid, np.trapezoid(kernel * density[None, :], grid, axis=1)


@dataclass(frozen=True)
class SequentialResult:
    fractions: list[float]
    z: list[float]
    boundaries: list[float]
    rejected: bool
    first_crossing: int | None


def sequential_test(
    z_values: list[float], fractions: list[float], alpha: float = 0.05
) -> SequentialResult:
    """Reject H0 at the first look whose |z| reaches its spending boundary."""
    bounds = obf_boundaries(fractions, alpha)
    first = next(
        (i for i, (z, c) in enumerate(zip(z_values, bounds, strict=True)) if abs(z) >= c), None
    )
    return SequentialResult(
        [float(f) for f in fractions],
        [float(z) for z in z_values],
        bounds,
        first is not None,
        first,
    )


def cs_rho(n_tune: float, alpha: float = 0.05) -> float:
    """The mixture parameter that makes the asymptotic confidence sequence tightest at
    `n_tune` units (Howard et al. 2021, eq. 3.20; GrowthBook's sequential tuning parameter)."""
    log_term = -2 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term + 1)) / n_tune)


def cs_half_width(se: Any, n: Any, alpha: float = 0.05, n_tune: float = 5_000) -> Any:
    """Half-width of the asymptotic confidence sequence (Waudby-Smith et al. 2023) for an
    estimate with standard error `se` from `n` units: valid simultaneously over every look,
    however many, so an analyst may look as often as they like. With se = sigma / sqrt(n):
    sigma * sqrt(2 (n rho^2 + 1) / (n^2 rho^2) * log(sqrt(n rho^2 + 1) / alpha)).
    Works elementwise on numpy arrays too (simulations over many looks and runs)."""
    rho2 = cs_rho(n_tune, alpha) ** 2
    return se * np.sqrt(2 * (n * rho2 + 1) / (n * rho2) * np.log(np.sqrt(n * rho2 + 1) / alpha))
